/**
 * The one clock of the domains: epoch milliseconds and a way to wait, injected so that
 * checks take time as an argument (a test moves it; nothing reads the wall clock inside a
 * verifier). A `Date` is made where one is printed, not passed around as the clock.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) =>
    new Promise((resolve) => {
      setTimeout(resolve, ms);
    }),
};

/** A clock reading `now` (e.g. a test's), sleeping in real time. */
export function clockFrom(now: () => number): Clock {
  return { now, sleep: (ms) => systemClock.sleep(ms) };
}
