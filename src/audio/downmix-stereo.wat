(module
  (memory (export "memory") 1)
  ;; stereo s16le at $src (frames × 4 bytes) → mono s16le at $dst (frames × 2 bytes):
  ;; (L + R + 1) >> 1 per frame, 8 frames per step, the rest one at a time
  (func (export "downmix") (param $src i32) (param $dst i32) (param $frames i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $frames) (i32.const 2))))
    (block $done8
      (loop $step8
        (br_if $done8 (i32.gt_u (i32.add (local.get $src) (i32.const 32)) (local.get $end)))
        (v128.store (local.get $dst)
          (i16x8.narrow_i32x4_s
            (i32x4.shr_s (i32x4.add (i32x4.extadd_pairwise_i16x8_s (v128.load (local.get $src))) (v128.const i32x4 1 1 1 1)) (i32.const 1))
            (i32x4.shr_s (i32x4.add (i32x4.extadd_pairwise_i16x8_s (v128.load offset=16 (local.get $src))) (v128.const i32x4 1 1 1 1)) (i32.const 1))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $step8)))
    (block $done1
      (loop $step1
        (br_if $done1 (i32.ge_u (local.get $src) (local.get $end)))
        (i32.store16 (local.get $dst)
          (i32.shr_s (i32.add (i32.add (i32.load16_s (local.get $src)) (i32.load16_s offset=2 (local.get $src))) (i32.const 1)) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
        (br $step1)))))
