/** The app's name, the last part of every page title. */
export const APP_NAME = 'Hearth';

/** Sets the document title to where the user is, e.g. `#general · Hearth`. */
export function setPageTitle(place: string | null): void {
  document.title = place ? `${place} · ${APP_NAME}` : APP_NAME;
}
