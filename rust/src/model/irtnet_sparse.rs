//! IrtNet's sparse mixture pass: each expert computes only the rows that selected it.

use super::irtnet::{gate_weights, IrtNet};
use super::{resize, Scratch};
use crate::linalg::{matmul, Layout, Mat, W};

impl IrtNet {
    /// `scratch.body_out[m, O]` = Σ over each row's selected experts (needs `Layout::InOut`).
    pub(crate) fn mixture_sparse(
        &self,
        x: &[f32],
        m: usize,
        scratch: &mut Scratch,
        threads: usize,
    ) {
        let (h, o, r, ns, dm) = (
            self.hidden,
            self.out,
            self.n_routed,
            self.n_shared,
            self.embed_dim,
        );
        let (w_in, b_in, w2t) = (&self.w_in, &self.b_in, &self.w2t);
        let e = ns + r;
        let eh = e * h;
        let ld1 = eh + r; // row stride of w_in ([D, E·H + R])
        let xm = Mat::new(x, m, dm);
        // gate logits and weights, [m, R] then [m, E]
        let mut gate = vec![0.0f32; m * r];
        matmul(
            xm,
            W::in_out_block(w_in, dm, ld1, eh, r),
            &mut gate,
            r,
            false,
            threads,
        );
        let mut gw = vec![0.0f32; m * e];
        for (g, wrow) in gate.chunks_exact_mut(r).zip(gw.chunks_exact_mut(e)) {
            for (gi, b) in g.iter_mut().zip(&b_in[eh..]) {
                *gi += b;
            }
            gate_weights(
                g,
                &self.selection_bias,
                self.top_k,
                ns,
                wrow,
                &mut scratch.order,
            );
        }
        resize(&mut scratch.body_out, m * o);
        scratch.body_out.fill(0.0);
        let mut xe: Vec<f32> = Vec::new();
        let mut he: Vec<f32> = Vec::new();
        let mut oe: Vec<f32> = Vec::new();
        let mut rows: Vec<usize> = Vec::new();
        for ei in 0..e {
            rows.clear();
            rows.extend((0..m).filter(|&i| gw[i * e + ei] != 0.0));
            let me = rows.len();
            if me == 0 {
                continue;
            }
            let xin = if me == m {
                x
            } else {
                xe.clear();
                for &i in &rows {
                    xe.extend_from_slice(&x[i * dm..(i + 1) * dm]);
                }
                &xe[..]
            };
            resize(&mut he, me * h);
            matmul(
                Mat::new(xin, me, dm),
                W::in_out_block(w_in, dm, ld1, ei * h, h),
                &mut he,
                h,
                false,
                threads,
            );
            let b1 = &b_in[ei * h..(ei + 1) * h];
            for (row, &i) in he.chunks_exact_mut(h).zip(&rows) {
                let we = gw[i * e + ei];
                for (v, b) in row.iter_mut().zip(b1) {
                    *v = (*v + b).max(0.0) * we;
                }
            }
            resize(&mut oe, me * o);
            matmul(
                Mat::new(&he, me, h),
                W::new(&w2t[ei * h * o..(ei + 1) * h * o], o, h, Layout::InOut),
                &mut oe,
                o,
                false,
                threads,
            );
            let b2 = &w2t[(eh + ei) * o..(eh + ei + 1) * o];
            for (orow, &i) in oe.chunks_exact(o).zip(&rows) {
                let we = gw[i * e + ei];
                for ((acc, v), b) in scratch.body_out[i * o..(i + 1) * o]
                    .iter_mut()
                    .zip(orow)
                    .zip(b2)
                {
                    *acc += v + we * b;
                }
            }
        }
    }
}
