(module
  (memory (export "memory") 1)
  ;; $count outputs of the polyphase FIR into i16 at $out. Output i reads the 8·$blocks input
  ;; samples (i16) from $in + 2·base_i (base_0 = 0) against phase_i's taps at
  ;; $taps + 32·$blocks·phase_i: per block of 8 input samples, 8 high taps then 8 low taps.
  ;; acc = (Σ hi·x << $loBits) + Σ lo·x (i32 dot products, i64 sum), out = clamp((acc + 2^(shift−1)) >> shift);
  ;; then phase += $down, base += phase / $up, phase %= $up.
  (func (export "fir") (param $in i32) (param $taps i32) (param $blocks i32) (param $up i32) (param $down i32)
                       (param $phase i32) (param $count i32) (param $out i32) (param $loBits i32) (param $shift i32)
    (local $end i32) (local $ip i32) (local $tp i32) (local $tend i32) (local $phaseBytes i32)
    (local $x v128) (local $hi v128) (local $lo v128) (local $hi2 v128) (local $lo2 v128) (local $acc i64) (local $v i64)
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 1))))
    (local.set $phaseBytes (i32.shl (local.get $blocks) (i32.const 5)))
    (block $done
      (loop $output
        (br_if $done (i32.ge_u (local.get $out) (local.get $end)))
        (local.set $ip (local.get $in))
        (local.set $tp (i32.add (local.get $taps) (i32.mul (local.get $phase) (local.get $phaseBytes))))
        (local.set $tend (i32.add (local.get $tp) (local.get $phaseBytes)))
        (local.set $hi (v128.const i32x4 0 0 0 0))
        (local.set $lo (v128.const i32x4 0 0 0 0))
        (local.set $hi2 (v128.const i32x4 0 0 0 0))
        (local.set $lo2 (v128.const i32x4 0 0 0 0))
        ;; two blocks a step (blocks is even), two accumulators each
        (loop $block
          (local.set $x (v128.load (local.get $ip)))
          (local.set $hi (i32x4.add (local.get $hi) (i32x4.dot_i16x8_s (local.get $x) (v128.load (local.get $tp)))))
          (local.set $lo (i32x4.add (local.get $lo) (i32x4.dot_i16x8_s (local.get $x) (v128.load offset=16 (local.get $tp)))))
          (local.set $x (v128.load offset=16 (local.get $ip)))
          (local.set $hi2 (i32x4.add (local.get $hi2) (i32x4.dot_i16x8_s (local.get $x) (v128.load offset=32 (local.get $tp)))))
          (local.set $lo2 (i32x4.add (local.get $lo2) (i32x4.dot_i16x8_s (local.get $x) (v128.load offset=48 (local.get $tp)))))
          (local.set $ip (i32.add (local.get $ip) (i32.const 32)))
          (local.set $tp (i32.add (local.get $tp) (i32.const 64)))
          (br_if $block (i32.lt_u (local.get $tp) (local.get $tend))))
        (local.set $hi (i32x4.add (local.get $hi) (local.get $hi2)))
        (local.set $lo (i32x4.add (local.get $lo) (local.get $lo2)))
        (local.set $acc
          (i64.add
            (i64.shl
              (i64.extend_i32_s
                (i32.add (i32.add (i32x4.extract_lane 0 (local.get $hi)) (i32x4.extract_lane 1 (local.get $hi)))
                         (i32.add (i32x4.extract_lane 2 (local.get $hi)) (i32x4.extract_lane 3 (local.get $hi)))))
              (i64.extend_i32_u (local.get $loBits)))
            (i64.extend_i32_s
              (i32.add (i32.add (i32x4.extract_lane 0 (local.get $lo)) (i32x4.extract_lane 1 (local.get $lo)))
                       (i32.add (i32x4.extract_lane 2 (local.get $lo)) (i32x4.extract_lane 3 (local.get $lo)))))))
        (local.set $v
          (i64.shr_s
            (i64.add (local.get $acc) (i64.shl (i64.const 1) (i64.extend_i32_u (i32.sub (local.get $shift) (i32.const 1)))))
            (i64.extend_i32_u (local.get $shift))))
        (if (i64.gt_s (local.get $v) (i64.const 32767)) (then (local.set $v (i64.const 32767))))
        (if (i64.lt_s (local.get $v) (i64.const -32768)) (then (local.set $v (i64.const -32768))))
        (i64.store16 (local.get $out) (local.get $v))
        (local.set $out (i32.add (local.get $out) (i32.const 2)))
        (local.set $phase (i32.add (local.get $phase) (local.get $down)))
        (local.set $in (i32.add (local.get $in) (i32.shl (i32.div_u (local.get $phase) (local.get $up)) (i32.const 1))))
        (local.set $phase (i32.rem_u (local.get $phase) (local.get $up)))
        (br $output))))
  ;; [Σa, Σb, Σc, Σd] of four i32x4 accumulators (the lanes of each summed, side by side). i32
  ;; sums wrap, so their order does not matter: each total fits in 32 bits (see $round4).
  (func $sum4 (param $a v128) (param $b v128) (param $c v128) (param $d v128) (result v128)
    (local $ab v128) (local $cd v128)
    ;; [a0+a2, b0+b2, a1+a3, b1+b3]
    (local.set $ab
      (i32x4.add
        (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a) (local.get $b))
        (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a) (local.get $b))))
    (local.set $cd
      (i32x4.add
        (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c) (local.get $d))
        (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c) (local.get $d))))
    (i32x4.add
      (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $ab) (local.get $cd))
      (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $ab) (local.get $cd))))

  ;; The rounding end of four outputs at once: (Σhi << loBits) + Σlo, + 2^(shift−1), >> shift in
  ;; 64-bit lanes, then to s16 with saturation (the clamp). Each result fits in 32 bits before
  ;; the narrow (|Σhi|, |Σlo| < 2^31 and shift > loBits), so taking the low words is exact.
  ;; The four s16 are the low 8 bytes of the result.
  (func $round4 (param $hi v128) (param $lo v128) (param $loBits i32) (param $shift i32) (result v128)
    (local $r v128) (local $v v128)
    (local.set $r (i64x2.splat (i64.shl (i64.const 1) (i64.extend_i32_u (i32.sub (local.get $shift) (i32.const 1))))))
    (local.set $v
      (i64x2.shr_s
        (i64x2.add
          (i64x2.add (i64x2.shl (i64x2.extend_low_i32x4_s (local.get $hi)) (local.get $loBits)) (i64x2.extend_low_i32x4_s (local.get $lo)))
          (local.get $r))
        (local.get $shift)))
    (i16x8.narrow_i32x4_s
      (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
        (local.get $v)
        (i64x2.shr_s
          (i64x2.add
            (i64x2.add (i64x2.shl (i64x2.extend_high_i32x4_s (local.get $hi)) (local.get $loBits)) (i64x2.extend_high_i32x4_s (local.get $lo)))
            (local.get $r))
          (local.get $shift)))
      (v128.const i32x4 0 0 0 0)))

  ;; The same outputs as fir for one phase (up = 1: every output uses the same taps), four at a
  ;; time: output i reads from $in + 2·$down·i, and the four share each load of the taps.
  ;; $count is a multiple of 4.
  (func (export "fir4") (param $in i32) (param $taps i32) (param $blocks i32) (param $down i32)
                        (param $count i32) (param $out i32) (param $loBits i32) (param $shift i32)
    (local $stride i32) (local $end i32) (local $tend i32) (local $tp i32)
    (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $p3 i32)
    (local $th v128) (local $tl v128) (local $x v128)
    (local $h0 v128) (local $l0 v128) (local $h1 v128) (local $l1 v128)
    (local $h2 v128) (local $l2 v128) (local $h3 v128) (local $l3 v128)
    (local.set $stride (i32.shl (local.get $down) (i32.const 1)))
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 1))))
    (local.set $tend (i32.add (local.get $taps) (i32.shl (local.get $blocks) (i32.const 5))))
    (block $done
      (loop $group
        (br_if $done (i32.ge_u (local.get $out) (local.get $end)))
        (local.set $p0 (local.get $in))
        (local.set $p1 (i32.add (local.get $p0) (local.get $stride)))
        (local.set $p2 (i32.add (local.get $p1) (local.get $stride)))
        (local.set $p3 (i32.add (local.get $p2) (local.get $stride)))
        (local.set $tp (local.get $taps))
        (local.set $h0 (v128.const i32x4 0 0 0 0)) (local.set $l0 (v128.const i32x4 0 0 0 0))
        (local.set $h1 (v128.const i32x4 0 0 0 0)) (local.set $l1 (v128.const i32x4 0 0 0 0))
        (local.set $h2 (v128.const i32x4 0 0 0 0)) (local.set $l2 (v128.const i32x4 0 0 0 0))
        (local.set $h3 (v128.const i32x4 0 0 0 0)) (local.set $l3 (v128.const i32x4 0 0 0 0))
        (loop $block
          (local.set $th (v128.load (local.get $tp)))
          (local.set $tl (v128.load offset=16 (local.get $tp)))
          (local.set $x (v128.load (local.get $p0)))
          (local.set $h0 (i32x4.add (local.get $h0) (i32x4.dot_i16x8_s (local.get $x) (local.get $th))))
          (local.set $l0 (i32x4.add (local.get $l0) (i32x4.dot_i16x8_s (local.get $x) (local.get $tl))))
          (local.set $x (v128.load (local.get $p1)))
          (local.set $h1 (i32x4.add (local.get $h1) (i32x4.dot_i16x8_s (local.get $x) (local.get $th))))
          (local.set $l1 (i32x4.add (local.get $l1) (i32x4.dot_i16x8_s (local.get $x) (local.get $tl))))
          (local.set $x (v128.load (local.get $p2)))
          (local.set $h2 (i32x4.add (local.get $h2) (i32x4.dot_i16x8_s (local.get $x) (local.get $th))))
          (local.set $l2 (i32x4.add (local.get $l2) (i32x4.dot_i16x8_s (local.get $x) (local.get $tl))))
          (local.set $x (v128.load (local.get $p3)))
          (local.set $h3 (i32x4.add (local.get $h3) (i32x4.dot_i16x8_s (local.get $x) (local.get $th))))
          (local.set $l3 (i32x4.add (local.get $l3) (i32x4.dot_i16x8_s (local.get $x) (local.get $tl))))
          (local.set $p0 (i32.add (local.get $p0) (i32.const 16)))
          (local.set $p1 (i32.add (local.get $p1) (i32.const 16)))
          (local.set $p2 (i32.add (local.get $p2) (i32.const 16)))
          (local.set $p3 (i32.add (local.get $p3) (i32.const 16)))
          (local.set $tp (i32.add (local.get $tp) (i32.const 32)))
          (br_if $block (i32.lt_u (local.get $tp) (local.get $tend))))
        (i64.store (local.get $out)
          (i64x2.extract_lane 0
            (call $round4
              (call $sum4 (local.get $h0) (local.get $h1) (local.get $h2) (local.get $h3))
              (call $sum4 (local.get $l0) (local.get $l1) (local.get $l2) (local.get $l3))
              (local.get $loBits) (local.get $shift))))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (local.set $in (i32.add (local.get $in) (i32.shl (local.get $stride) (i32.const 2))))
        (br $group)))))
