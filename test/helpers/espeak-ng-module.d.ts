declare module '@echogarden/espeak-ng-emscripten' {
  interface ESpeakNGWorker {
    get_samplerate(): number;
    set_voice(name: string): number;
    set_rate(wordsPerMinute: number): number;
    /** Calls `cb` with each block of 16-bit mono samples; returning true stops the synthesis. */
    synthesize(text: string, cb: (samples: Int16Array, events: unknown[]) => boolean): void;
    __destroy__(): void;
  }
  interface ESpeakNGModule {
    eSpeakNGWorker: new () => ESpeakNGWorker;
  }
  export default function createModule(): Promise<ESpeakNGModule>;
}
