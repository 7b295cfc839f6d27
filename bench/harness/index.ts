/** The load-testing harness's public API, for bench scripts that plug in (see bench/README.md). */
export type { BenchResult, Figure, HostFacts, LatencySummary, LoadOptions, LoopMode, Outcome, Profile, RunResult, ServerMode, Target, Transport } from './types.js';
export { LatencyHistogram, summarise } from './histogram.js';
export { hostFacts, linearRegression, readProc, ServerMonitor } from './monitor.js';
export { runLoad, defaultLoad } from './runner.js';
export { startServer, urlTarget, noServer, testModel, cleanupModels, cliPath, type StartedTarget, type StartOptions } from './target.js';
export { writeResult, makeResult, figureOf, withBaseline, failedFigure, runsTable, figuresTable, renderBenchmarks, writeBenchmarks, readResults, resultsDir } from './report.js';
export { HttpConnection, errorCode } from './clients/http.js';
export { ContractClient } from './clients/contract.js';
export { connectPeer, loadWrtc } from './clients/wrtc.js';
