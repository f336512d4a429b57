import { ref, watch, type Ref } from 'vue';
import { DISPLAY_NAME_KEY } from '../api/session';

/**
 * A string kept in localStorage under `key`, so it survives reloads. Storage can be unavailable
 * (private modes, full quota); the value then simply lives for this page only.
 */
export function useStoredString(key: string, fallback = ''): Ref<string> {
  const value = ref(read(key) ?? fallback);
  watch(value, (next) => {
    try {
      localStorage.setItem(key, next);
    } catch {
      // Nothing to do: the value still works for this page.
    }
  });
  return value;
}

function read(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

/** The display name the user joins with, remembered across visits. */
export function useDisplayName(): Ref<string> {
  return useStoredString(DISPLAY_NAME_KEY);
}
