import { onScopeDispose, ref, type Ref } from 'vue';

/**
 * True while the primary pointer is coarse (a finger on a touch screen), where keyboard hints
 * such as "hold Space" make no sense. Follows changes, such as a tablet docking to a keyboard
 * and trackpad, and stops listening when the calling scope is disposed.
 */
export function useTouchPrimary(): Readonly<Ref<boolean>> {
  const query = window.matchMedia('(pointer: coarse)');
  const touch = ref(query.matches);
  const onChange = (event: MediaQueryListEvent) => {
    touch.value = event.matches;
  };
  query.addEventListener('change', onChange);
  onScopeDispose(() => query.removeEventListener('change', onChange));
  return touch;
}
