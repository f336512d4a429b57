import { createRouter, createWebHistory } from 'vue-router';
import ChannelListView from './views/ChannelListView.vue';
import ChannelView from './views/ChannelView.vue';

/** The app's routes: the channel list, and one voice channel. */
export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/', name: 'channels', component: ChannelListView },
    { path: '/voice/:channel', name: 'voice', component: ChannelView, props: true },
    { path: '/:unknown(.*)*', redirect: '/' },
  ],
});
