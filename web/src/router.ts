import { createRouter, createWebHistory } from 'vue-router';
import ChannelListView from './views/ChannelListView.vue';
import ChannelView from './views/ChannelView.vue';
import LoginView from './views/LoginView.vue';
import StreamSettingsView from './views/StreamSettingsView.vue';

/**
 * The app's routes: the channel list, sign-in, and per channel its voice room, player and
 * streamer page.
 */
export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/', name: 'channels', component: ChannelListView },
    { path: '/login', name: 'login', component: LoginView },
    { path: '/voice/:channel', name: 'voice', component: ChannelView, props: true },
    // Loaded on demand: hls.js is most of the player's weight, and voice users never need it.
    {
      path: '/watch/:channel',
      name: 'watch',
      component: () => import('./views/WatchView.vue'),
      props: true,
    },
    { path: '/stream/:channel', name: 'stream', component: StreamSettingsView, props: true },
    { path: '/:unknown(.*)*', redirect: '/' },
  ],
});
