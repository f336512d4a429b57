import { createRouter, createWebHistory, type RouteLocationNormalized } from 'vue-router';
import ChannelGate from './components/ChannelGate.vue';
import { setPageTitle } from './composables/pageTitle';
import ChannelListView from './views/ChannelListView.vue';
import ChannelView from './views/ChannelView.vue';
import LoginView from './views/LoginView.vue';
import StreamSettingsView from './views/StreamSettingsView.vue';

declare module 'vue-router' {
  interface RouteMeta {
    /** Where the page is, for its title; channel pages get their channel's name. */
    place?: (channel: string) => string;
  }
}

/**
 * The app's routes: the channel list, sign-in, and per channel its voice room, player and
 * streamer page. Channel pages sit inside a gate that shows "no such channel" for names no
 * channel can have, so the pages themselves only ever see valid names.
 */
export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/', name: 'channels', component: ChannelListView, meta: { place: () => 'Channels' } },
    { path: '/login', name: 'login', component: LoginView, meta: { place: () => 'Sign in' } },
    {
      path: '/voice/:channel',
      component: ChannelGate,
      props: true,
      children: [{ path: '', name: 'voice', component: ChannelView, props: true }],
      meta: { place: (channel) => `#${channel}` },
    },
    {
      path: '/watch/:channel',
      component: ChannelGate,
      props: true,
      // Loaded on demand: hls.js is most of the player's weight, and voice users never need it.
      children: [
        {
          path: '',
          name: 'watch',
          component: () => import('./views/WatchView.vue'),
          props: true,
        },
      ],
      meta: { place: (channel) => `Watch ${channel}` },
    },
    {
      path: '/stream/:channel',
      component: ChannelGate,
      props: true,
      children: [{ path: '', name: 'stream', component: StreamSettingsView, props: true }],
      meta: { place: (channel) => `Go live on ${channel}` },
    },
    { path: '/:unknown(.*)*', redirect: '/' },
  ],
});

function placeOf(route: RouteLocationNormalized): string | null {
  const channel = route.params.channel;
  return route.meta.place?.(typeof channel === 'string' ? channel : '') ?? null;
}

// The gate and the voice page retitle themselves when the channel turns out not to exist.
router.afterEach((to) => setPageTitle(placeOf(to)));
