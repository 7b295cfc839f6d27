/** Every route the server knows, gathered from each group: the single table the router and the docs read. */
import type { RouteDef } from '../route.js';
import { controlRoutes } from './control.js';
import { httpRoutes } from './http.js';
import { inferenceRoutes } from './inference.js';
import { modelRoutes } from './models.js';
import { sessionRoutes } from './sessions.js';
import { systemRoutes } from './system.js';
import { webrtcRoutes } from './webrtc.js';

export const allRoutes: RouteDef[] = [...systemRoutes, ...controlRoutes, ...inferenceRoutes, ...modelRoutes, ...httpRoutes, ...webrtcRoutes, ...sessionRoutes];
