import { ApiError } from './http';

/**
 * A failed action as a sentence to show next to the control that started it. Failures are told
 * apart by their code; the server's message is kept where it names the particular problem.
 */
export function describeFailure(failure: unknown): string {
  if (!(failure instanceof ApiError)) {
    return failure instanceof Error ? sentence(failure.message) : sentence(String(failure));
  }
  switch (failure.code) {
    case 'unauthorized':
      return 'Sign in to do this.';
    case 'forbidden':
      return 'You are not allowed to do this.';
    case 'not_found':
      return 'It no longer exists; it may have been deleted meanwhile.';
    case 'rate_limited':
      return 'Too many attempts: wait a moment and try again.';
    case 'network':
      return 'The server cannot be reached: check your connection and try again.';
    case 'unavailable':
    case 'internal':
    case 'http':
      return 'The server could not do this right now: try again in a moment.';
    case 'invalid_response':
      return 'The server sent an answer this page does not understand: reload the page.';
    default:
      return sentence(failure.message);
  }
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return 'Something went wrong.';
  const capitalized = trimmed[0]!.toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capitalized) ? capitalized : `${capitalized}.`;
}
