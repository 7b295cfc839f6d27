/** The type of a tap test object, the root `t` and subtests alike, for helpers that take either. */
import type t from 'tap';

type TestCallback = Extract<Parameters<typeof t.test>[number], (...args: never[]) => unknown>;
export type TapTest = Parameters<TestCallback>[0];
