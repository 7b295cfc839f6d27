/** Registers every built-in transport with the transport table (imported once by the CLI). */
import './http/index.js';
import './native/transport.js';
import './webrtc/transport.js';
