//! Weight matrices packed once at load time into column panels, for contiguous reads.
//!
//! A layer `y = x · Wᵀ` with `W` of logical shape `[n (out), k (in)]` is stored as panels of
//! `NB` output columns; panel `p` is `[k, NB]` row-major (`data[p·k·NB + kk·NB + j]`), zero-padded
//! past its last real column. A thread that owns a run of panels therefore streams one contiguous
//! block of memory, each weight exactly once, whatever the batch size; and a panel's `k`-range
//! is a plain strided matrix (row stride `NB`) that a GEMM kernel can read without repacking.
//!
//! Columns come in *segments* (one per expert, one for the gate): each segment starts a new
//! panel, so that a segment (one expert's units) is a whole run of panels of its own.
//!
//! bf16 panels for the AVX512_BF16 dot-product kernel (`dot`) interleave `k` in pairs instead:
//! panel `p` is `[kp, NB, 2]` with `kp = ⌈k/2⌉` (`data[2·((p·kp + kk/2)·NB + j) + kk%2]`, the
//! last pair zero-padded when `k` is odd), since `vdpbf16ps` multiplies adjacent pairs of bf16
//! values per f32 lane. Both layouts stream a panel as one contiguous block.

/// Output columns per panel: one cache line is 16 f32, a panel row is 4 lines (8 AVX2 vectors).
pub const NB: usize = 64;

/// Storage precision of packed weights. Accumulation is always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Exact: the file's f32 values.
    F32,
    /// bfloat16 (f32 rounded to nearest-even on its top 16 bits): half the bytes to stream.
    Bf16,
}

impl Dtype {
    /// Bytes per stored weight.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Store {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    /// bf16 in `k` pairs, for the dot-product kernel (see the module docs).
    Bf16Pairs(Vec<u16>),
}

/// Where a panel's columns land in the logical output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panel {
    /// First logical output column.
    pub col0: usize,
    /// Real columns (`<= NB`); the rest of the panel is zero padding.
    pub width: usize,
}

/// A weight matrix in column panels (see the module docs).
#[derive(Debug, Clone)]
pub struct Packed {
    k: usize,
    n: usize,
    panels: Vec<Panel>,
    /// First panel of each segment, plus the total at the end.
    seg_start: Vec<usize>,
    pub(crate) store: Store,
}

/// Rounds an f32 to bfloat16 bits (nearest, ties to even; NaN stays NaN).
#[inline]
pub fn f32_to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) as u16) | 0x0040;
    }
    let round = 0x7FFF + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bfloat16 bits (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

impl Packed {
    /// Packs a `[n, k]` matrix given element-wise by `get(col, kk)`; `segments` are the column
    /// counts of the segments (summing to `n`), each starting a new panel. bf16 takes the
    /// layout of the kernel this CPU runs (`kernels::bf16_dot`).
    pub fn build(
        k: usize,
        segments: &[usize],
        dtype: Dtype,
        get: impl Fn(usize, usize) -> f32,
    ) -> Packed {
        Packed::build_for(
            k,
            segments,
            dtype,
            dtype == Dtype::Bf16 && super::bf16_dot(),
            get,
        )
    }

    /// `build`, with bf16 stored in `k` pairs for the dot-product kernel when `pairs` (only
    /// where that kernel can run: tests build both layouts).
    pub(crate) fn build_for(
        k: usize,
        segments: &[usize],
        dtype: Dtype,
        pairs: bool,
        get: impl Fn(usize, usize) -> f32,
    ) -> Packed {
        let mut panels = Vec::new();
        let mut seg_start = Vec::with_capacity(segments.len() + 1);
        let mut col = 0;
        for &s in segments {
            seg_start.push(panels.len());
            let mut j = 0;
            while j < s {
                let width = NB.min(s - j);
                panels.push(Panel {
                    col0: col + j,
                    width,
                });
                j += width;
            }
            col += s;
        }
        seg_start.push(panels.len());
        let fill = |out: &mut dyn FnMut(usize, usize, usize, f32)| {
            for (p, pan) in panels.iter().enumerate() {
                for kk in 0..k {
                    for j in 0..pan.width {
                        out(p, kk, j, get(pan.col0 + j, kk));
                    }
                }
            }
        };
        let store = match (dtype, pairs) {
            (Dtype::F32, _) => {
                let mut d = vec![0.0f32; panels.len() * k * NB];
                fill(&mut |p, kk, j, v| d[(p * k + kk) * NB + j] = v);
                Store::F32(d)
            }
            (Dtype::Bf16, false) => {
                let mut d = vec![0u16; panels.len() * k * NB];
                fill(&mut |p, kk, j, v| d[(p * k + kk) * NB + j] = f32_to_bf16(v));
                Store::Bf16(d)
            }
            (Dtype::Bf16, true) => {
                let kp = k.div_ceil(2);
                let mut d = vec![0u16; panels.len() * kp * NB * 2];
                fill(&mut |p, kk, j, v| d[pair_index(kp, p, kk, j)] = f32_to_bf16(v));
                Store::Bf16Pairs(d)
            }
        };
        Packed {
            k,
            n: col,
            panels,
            seg_start,
            store,
        }
    }

    /// Packs a row-major `[n, k]` matrix (PyTorch's `Linear.weight`) as one segment.
    pub fn from_out_in(w: &[f32], n: usize, k: usize, dtype: Dtype) -> Packed {
        assert_eq!(w.len(), n * k, "weight matrix size");
        Packed::build(k, &[n], dtype, |j, kk| w[j * k + kk])
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Logical output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    pub fn dtype(&self) -> Dtype {
        match self.store {
            Store::F32(_) => Dtype::F32,
            Store::Bf16(_) | Store::Bf16Pairs(_) => Dtype::Bf16,
        }
    }

    /// Whether the products run on the AVX512_BF16 dot-product kernel (bf16 in `k` pairs).
    pub fn bf16_dot(&self) -> bool {
        matches!(self.store, Store::Bf16Pairs(_))
    }

    pub fn panels(&self) -> &[Panel] {
        &self.panels
    }

    /// The panels of segment `s`.
    pub fn segment(&self, s: usize) -> std::ops::Range<usize> {
        self.seg_start[s]..self.seg_start[s + 1]
    }

    /// Logical weights (without padding).
    pub fn n_weights(&self) -> usize {
        self.n * self.k
    }

    /// Bytes one pass over every panel streams (padding included).
    pub fn bytes(&self) -> usize {
        let rows = if self.bf16_dot() {
            2 * self.k.div_ceil(2)
        } else {
            self.k
        };
        self.panels.len() * rows * NB * self.dtype().size()
    }

    /// Element `(col, kk)` of the logical matrix, as stored (after rounding).
    pub fn get(&self, col: usize, kk: usize) -> f32 {
        let p = self
            .panels
            .partition_point(|pan| pan.col0 + pan.width <= col);
        let (j, i) = (col - self.panels[p].col0, (p * self.k + kk) * NB);
        match &self.store {
            Store::F32(d) => d[i + j],
            Store::Bf16(d) => bf16_to_f32(d[i + j]),
            Store::Bf16Pairs(d) => bf16_to_f32(d[pair_index(self.k.div_ceil(2), p, kk, j)]),
        }
    }
}

/// Index of `(panel p, row kk, column j)` in the pair layout of `kp` pairs per panel.
#[inline]
fn pair_index(kp: usize, p: usize, kk: usize, j: usize) -> usize {
    2 * ((p * kp + kk / 2) * NB + j) + kk % 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0)
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        // just above halfway rounds up
        let up = f32::from_bits(1.0f32.to_bits() + 0x8001);
        assert_eq!(bf16_to_f32(f32_to_bf16(up)), 1.0 + 1.0 / 128.0);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(f32::INFINITY)), f32::INFINITY);
        for i in 0..10_000 {
            let v = (i as f32 * 0.37).sin() * 3.0;
            let r = bf16_to_f32(f32_to_bf16(v));
            assert!((r - v).abs() <= v.abs() / 256.0, "{v} -> {r}");
        }
    }

    #[test]
    fn segments_start_new_panels_and_round_trip() {
        let (k, segs) = (5, [70usize, 3, 64]);
        let n: usize = segs.iter().sum();
        let w: Vec<f32> = (0..n * k).map(|i| i as f32).collect();
        let p = Packed::build(k, &segs, Dtype::F32, |j, kk| w[j * k + kk]);
        assert_eq!(p.n(), n);
        assert_eq!(p.panels().len(), 4);
        assert_eq!(p.segment(0), 0..2);
        assert_eq!(p.segment(1), 2..3);
        assert_eq!(p.segment(2), 3..4);
        assert_eq!(p.panels()[1], Panel { col0: 64, width: 6 });
        for j in 0..n {
            for kk in 0..k {
                assert_eq!(p.get(j, kk), w[j * k + kk]);
            }
        }
        for pairs in [false, true] {
            let b = Packed::build_for(k, &[n], Dtype::Bf16, pairs, |j, kk| w[j * k + kk]);
            assert_eq!(b.panels().len(), 3); // one segment: 64 + 64 + 9 columns
                                             // k = 5 in pairs: 3 pairs, the last padded
            assert_eq!(b.bytes(), 3 * if pairs { 6 } else { k } * NB * 2);
            assert_eq!(b.bf16_dot(), pairs);
            for j in 0..n {
                for kk in 0..k {
                    assert_eq!(b.get(j, kk), bf16_to_f32(f32_to_bf16(w[j * k + kk])));
                }
            }
        }
    }
}
