/** Types of @echogarden/fvad-wasm (libfvad, WebRTC's VAD, compiled to WebAssembly; the package ships none). */
declare module '@echogarden/fvad-wasm' {
  export interface FvadModule {
    /** A new VAD instance (a pointer), 0 on failure. */
    _fvad_new(): number;
    _fvad_free(inst: number): void;
    _fvad_reset(inst: number): void;
    /** 0 quality … 3 very aggressive; returns 0, or -1 for a bad mode. */
    _fvad_set_mode(inst: number, mode: number): number;
    /** 8000, 16000, 32000 or 48000; returns 0, or -1 otherwise. */
    _fvad_set_sample_rate(inst: number, rate: number): number;
    /** One 10, 20 or 30 ms frame of int16 samples at `frame`: 1 speech, 0 not, -1 bad length. */
    _fvad_process(inst: number, frame: number, length: number): number;
    _malloc(bytes: number): number;
    _free(ptr: number): void;
    HEAP16: Int16Array;
  }
  const createFvad: (options?: Record<string, unknown>) => Promise<FvadModule>;
  export default createFvad;
}
