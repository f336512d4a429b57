export {
  NGINX_BIN,
  NginxProcess as TestNginx,
  childPids,
  freePort,
  isRunning,
  testNginxConfig,
  type NginxConfigTest,
  type NginxLayout,
} from '../../src/nginx-process';
