/** Well-known bus addresses: one per actor, so a route table can name its owner. */
export const Addresses = {
  router: 'router',
  system: 'system',
  models: 'models',
  storage: 'storage',
  httpTransport: 'transport.http',
  nativeTransport: 'transport.native',
  webrtcTransport: 'transport.webrtc',
} as const;

export type Address = (typeof Addresses)[keyof typeof Addresses];
