//! IrtNet's sparse mixture pass: each expert computes only the rows that selected it, against
//! its own panels (a segment of `W1`, a `k` range of `W2`).

use super::irtnet::IrtNet;
use super::{resize, Scratch};
use crate::kernels::matmul_packed;
use crate::linalg::Mat;

impl IrtNet {
    /// `scratch.body_out[m, O]` = Σ over each row's selected experts (`scratch.gate_w` holds
    /// the expert weights).
    pub(crate) fn mixture_sparse(
        &self,
        x: &[f32],
        m: usize,
        scratch: &mut Scratch,
        threads: usize,
    ) {
        let (h, o, dm) = (self.hidden, self.out, self.embed_dim);
        let e = self.n_shared + self.n_routed;
        let s = scratch;
        resize(&mut s.body_out, m * o);
        s.body_out.fill(0.0);
        let all2 = 0..self.w2.panels().len();
        for ei in 0..e {
            s.rows.clear();
            s.rows
                .extend((0..m).filter(|&i| s.gate_w[i * e + ei] != 0.0));
            let me = s.rows.len();
            if me == 0 {
                continue;
            }
            let xin: &[f32] = if me == m {
                x
            } else {
                s.xe.clear();
                for &i in &s.rows {
                    s.xe.extend_from_slice(&x[i * dm..(i + 1) * dm]);
                }
                &s.xe
            };
            resize(&mut s.he, me * h);
            let seg = self.w1.segment(ei);
            let xm = Mat::new(xin, me, dm);
            matmul_packed(xm, &self.w1, 0, seg, &mut s.he, h, false, threads);
            let b1 = &self.b1[ei * h..(ei + 1) * h];
            for (row, &i) in s.he.chunks_exact_mut(h).zip(&s.rows) {
                let we = s.gate_w[i * e + ei];
                for (v, b) in row.iter_mut().zip(b1) {
                    *v = (*v + b).max(0.0) * we;
                }
            }
            resize(&mut s.oe, me * o);
            let hm = Mat::new(&s.he, me, h);
            matmul_packed(
                hm,
                &self.w2,
                ei * h,
                all2.clone(),
                &mut s.oe,
                o,
                false,
                threads,
            );
            let b2 = &self.b2[ei * o..(ei + 1) * o];
            for (orow, &i) in s.oe.chunks_exact(o).zip(&s.rows) {
                let we = s.gate_w[i * e + ei];
                let acc = &mut s.body_out[i * o..(i + 1) * o];
                for ((a, v), b) in acc.iter_mut().zip(orow).zip(b2) {
                    *a += v + we * b;
                }
            }
        }
    }
}
