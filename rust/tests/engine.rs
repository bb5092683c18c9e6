//! Pure-Rust tests of the engine (no Python): load/validate files built in memory, compare the
//! forward pass with a naive f64 implementation of docs/format.md, check the error paths.

use std::collections::HashMap;

use irt_fast::infer::{RouteSpec, Rule};
use irt_fast::{Engine, Error, Model, Weights};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

struct Cfg {
    dm: usize,
    d: usize,
    n: usize,
    h: usize,
    o: usize,
    ns: usize,
    nr: usize,
    k: usize,
}

const CFG: Cfg = Cfg {
    dm: 12,
    d: 5,
    n: 3,
    h: 10,
    o: 6,
    ns: 1,
    nr: 4,
    k: 2,
};

fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1.2
        })
        .collect()
}

fn tensors(c: &Cfg) -> Tensors {
    let e = c.ns + c.nr;
    let shapes: Vec<(&'static str, Vec<usize>)> = vec![
        ("experts.w1", vec![e, c.h, c.dm]),
        ("experts.b1", vec![e, c.h]),
        ("experts.w2", vec![e, c.o, c.h]),
        ("experts.b2", vec![e, c.o]),
        ("gate.weight", vec![c.nr, c.dm]),
        ("gate.bias", vec![c.nr]),
        ("gate.selection_bias", vec![c.nr]),
        ("alpha.weight", vec![c.d, c.o]),
        ("alpha.bias", vec![c.d]),
        ("beta.weight", vec![1, c.o]),
        ("beta.bias", vec![1]),
        ("theta", vec![c.n, c.d]),
        ("llm_bias", vec![c.n]),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, s))| {
            let len = s.iter().product();
            let scale = if name == "theta" { 3.0 } else { 1.0 };
            let v = rand(len, i as u64 + 1).iter().map(|x| x * scale).collect();
            (name, s, v)
        })
        .collect()
}

type Tensors = Vec<(&'static str, Vec<usize>, Vec<f32>)>;

/// The entry of tensor `name` (panics on a name the fixture does not have).
fn tensor<'a>(t: &'a mut Tensors, name: &str) -> &'a mut (&'static str, Vec<usize>, Vec<f32>) {
    t.iter_mut()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no tensor {name:?} in the fixture"))
}

fn config_json(c: &Cfg) -> String {
    format!(
        r#"{{"method":"irtnet","embed_dim":{},"d":{},"n_llms":{},"llm_bias":true,"hidden_dim":{},"expert_dim":{},"n_shared":{},"n_routed":{},"top_k":{},"dropout":0.5}}"#,
        c.dm, c.d, c.n, c.h, c.o, c.ns, c.nr, c.k
    )
}

fn file(
    t: &[(&'static str, Vec<usize>, Vec<f32>)],
    meta_changes: &[(&str, &str)],
    config: &str,
) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(n, s, v)| {
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.to_string(), s.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let mut meta: HashMap<String, String> = HashMap::from([
        ("format".into(), "irt_fast".into()),
        ("format_version".into(), "1".into()),
        ("config".into(), config.into()),
        ("llm_names".into(), r#"["a","b","c"]"#.into()),
        (
            "embedder".into(),
            format!(r#"{{"name":"e","dim":{},"normalize":true}}"#, CFG.dm),
        ),
    ]);
    for (k, v) in meta_changes {
        meta.insert(k.to_string(), v.to_string());
    }
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn good() -> Vec<u8> {
    file(&tensors(&CFG), &[], &config_json(&CFG))
}

fn format_err(bytes: &[u8]) -> String {
    match Weights::from_bytes(bytes, "test.safetensors") {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("expected a format error, the file loaded"),
    }
}

/// docs/format.md in f64, straight from the tensors.
fn naive(t: &[(&'static str, Vec<usize>, Vec<f32>)], c: &Cfg, x: &[f32]) -> Vec<f64> {
    let g = |name: &str| -> Vec<f64> {
        let v = &t.iter().find(|(n, _, _)| *n == name).unwrap().2;
        v.iter().map(|&x| x as f64).collect()
    };
    let (w1, b1, w2, b2) = (
        g("experts.w1"),
        g("experts.b1"),
        g("experts.w2"),
        g("experts.b2"),
    );
    let (gw, gb, sb) = (g("gate.weight"), g("gate.bias"), g("gate.selection_bias"));
    let (aw, ab, bw, bb) = (
        g("alpha.weight"),
        g("alpha.bias"),
        g("beta.weight"),
        g("beta.bias"),
    );
    let (th, lb) = (g("theta"), g("llm_bias"));
    let mut out = vec![];
    for v in x.chunks(c.dm) {
        let v: Vec<f64> = v.iter().map(|&a| a as f64).collect();
        let expert = |e: usize| -> Vec<f64> {
            let hid: Vec<f64> = (0..c.h)
                .map(|j| {
                    let s: f64 = (0..c.dm).map(|p| w1[(e * c.h + j) * c.dm + p] * v[p]).sum();
                    (s + b1[e * c.h + j]).max(0.0)
                })
                .collect();
            (0..c.o)
                .map(|q| {
                    let s: f64 = (0..c.h).map(|j| w2[(e * c.o + q) * c.h + j] * hid[j]).sum();
                    s + b2[e * c.o + q]
                })
                .collect()
        };
        let logits: Vec<f64> = (0..c.nr)
            .map(|i| (0..c.dm).map(|p| gw[i * c.dm + p] * v[p]).sum::<f64>() + gb[i])
            .collect();
        let mut order: Vec<usize> = (0..c.nr).collect();
        order.sort_by(|&a, &b| (logits[b] + sb[b]).total_cmp(&(logits[a] + sb[a])));
        let sel = &order[..c.k];
        let z: f64 = sel.iter().map(|&i| logits[i].exp()).sum();
        let mut h = vec![0.0; c.o];
        for s in 0..c.ns {
            h.iter_mut().zip(expert(s)).for_each(|(a, b)| *a += b);
        }
        for &i in sel {
            let w = logits[i].exp() / z;
            h.iter_mut()
                .zip(expert(c.ns + i))
                .for_each(|(a, b)| *a += w * b);
        }
        let alpha: Vec<f64> = (0..c.d)
            .map(|j| (0..c.o).map(|q| aw[j * c.o + q] * h[q]).sum::<f64>() + ab[j])
            .collect();
        let beta: f64 = (0..c.o).map(|q| bw[q] * h[q]).sum::<f64>() + bb[0];
        for m in 0..c.n {
            let z: f64 = (0..c.d).map(|j| alpha[j] * th[m * c.d + j]).sum::<f64>() - beta + lb[m];
            out.push(1.0 / (1.0 + (-z).exp()));
        }
    }
    out
}

#[test]
fn forward_matches_the_spec_for_every_thread_count_and_batch() {
    // top_k = 2 of 4 runs the sparse mixture, top_k = 4 the dense one
    for k in [2, 4] {
        let c = Cfg { k, ..CFG };
        let t = tensors(&c);
        let w = Weights::from_bytes(&file(&t, &[], &config_json(&c)), "mem").unwrap();
        assert_eq!(w.llm_names, ["a", "b", "c"]);
        let model = Model::new(w);
        assert_eq!(model.sparse_moe(), k == 2);
        let x = rand(777 * c.dm, 99);
        let want = naive(&t, &c, &x);
        for threads in [1, 2, 3] {
            let e = Engine::new(model.clone(), Some(threads)).unwrap();
            for b in [1, 2, 63, 400, 777] {
                let p = e.predict_proba(&x[..b * c.dm], b).unwrap();
                for (got, want) in p.iter().zip(&want) {
                    assert!((*got as f64 - want).abs() < 1e-5, "k={k}: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn one_thread_engine_computes_on_the_caller_and_gives_its_flags_back() {
    use irt_fast::kernels::ftz::mxcsr;
    let t = tensors(&CFG);
    let model = Model::new(Weights::from_bytes(&file(&t, &[], &config_json(&CFG)), "m").unwrap());
    let x = rand(300 * CFG.dm, 5);
    let one = Engine::new(model.clone(), Some(1)).unwrap();
    let two = Engine::new(model, Some(2)).unwrap();
    std::thread::spawn(move || {
        let before = mxcsr();
        let got = one.predict_proba(&x, 300).unwrap();
        assert_eq!(mxcsr(), before, "the caller's MXCSR changed");
        let want = two.predict_proba(&x, 300).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    })
    .join()
    .unwrap();
}

#[test]
fn route_and_accuracy_agree_with_proba() {
    let e = Engine::new(Model::new(Weights::from_bytes(&good(), "m").unwrap()), None).unwrap();
    let b = 300;
    let x = rand(b * CFG.dm, 5);
    let p = e.predict_proba(&x, b).unwrap();
    let spec = RouteSpec {
        candidates: vec![0, 1, 2],
        cost: None,
        rule: Rule::Best,
    };
    let (choice, prob) = e.route(&x, b, &spec).unwrap();
    for i in 0..b {
        let row = &p[i * 3..(i + 1) * 3];
        let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(prob[i], best);
        assert_eq!(row[choice[i] as usize], best);
    }
    let groups: Vec<u32> = (0..b as u32).map(|i| i % 2).collect();
    let (sums, counts) = e.predict_accuracy(&x, b, Some((&groups, 2))).unwrap();
    assert_eq!(counts, [150, 150]);
    for m in 0..3 {
        let even: f64 = (0..b).step_by(2).map(|i| p[i * 3 + m] as f64).sum();
        assert!((sums[m] - even).abs() < 1e-4);
    }
}

#[test]
fn truncated_or_padded_files_are_format_errors() {
    let bytes = good();
    for keep in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        format_err(&bytes[..keep]);
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4]);
    format_err(&longer);
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let mut t = tensors(&CFG);
    *tensor(&mut t, "experts.w2") = ("experts.w2", vec![5, 6, 9], vec![0.0; 5 * 6 * 9]);
    let msg = format_err(&file(&t, &[], &config_json(&CFG)));
    assert!(
        msg.contains("experts.w2") && msg.contains("[5, 6, 9]") && msg.contains("[5, 6, 10]"),
        "{msg}"
    );
}

#[test]
fn version_and_metadata_errors() {
    let t = tensors(&CFG);
    let cj = config_json(&CFG);
    let msg = format_err(&file(&t, &[("format_version", "3")], &cj));
    assert!(
        msg.contains("\"3\"") && msg.contains("\"1\" and \"2\""),
        "{msg}"
    );
    for training in ["", "{", "[1]", &"[".repeat(2000)] {
        let msg = format_err(&file(&t, &[("training", training)], &cj));
        assert!(msg.contains("training"), "{msg}");
    }
    format_err(&file(&t, &[("format", "gguf")], &cj));
    format_err(&file(&t, &[("llm_names", r#"["a","a","c"]"#)], &cj));
    format_err(&file(
        &t,
        &[("embedder", r#"{"name":"e","dim":3,"normalize":true}"#)],
        &cj,
    ));
    let msg = format_err(&file(&t, &[], &cj.replace("\"top_k\":2", "\"top_k\":9")));
    assert!(msg.contains("top_k"), "{msg}");
    let msg = format_err(&file(&t, &[], &cj.replace("\"hidden_dim\":10,", "")));
    assert!(msg.contains("hidden_dim"), "{msg}");
}

#[test]
fn non_finite_weights_and_inputs_are_rejected() {
    let mut t = tensors(&CFG);
    tensor(&mut t, "theta").2[3] = f32::NAN;
    let msg = format_err(&file(&t, &[], &config_json(&CFG)));
    assert!(msg.contains("theta"), "{msg}");
    let e = Engine::new(
        Model::new(Weights::from_bytes(&good(), "m").unwrap()),
        Some(1),
    )
    .unwrap();
    let mut x = rand(2 * CFG.dm, 1);
    x[CFG.dm + 4] = f32::INFINITY;
    assert!(
        matches!(e.predict_proba(&x, 2), Err(Error::Input(m)) if m.contains("row 1, column 4"))
    );
    assert!(matches!(e.predict_proba(&x[..5], 1), Err(Error::Input(_))));
    assert!(matches!(e.predict_proba(&[], 0), Err(Error::Input(_))));
}

#[test]
fn missing_file_is_not_found() {
    let r = Engine::load(
        std::path::Path::new("/nonexistent/irt_fast.safetensors"),
        None,
    );
    assert!(matches!(r, Err(Error::NotFound(_))));
}

/// A v2 file: `good()` plus the given extra metadata and tensors.
fn v2(meta: &[(&str, &str)], extra: &[(&'static str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut t = tensors(&CFG);
    t.extend(extra.iter().cloned());
    let mut m = vec![("format_version", "2")];
    m.extend_from_slice(meta);
    file(&t, &m, &config_json(&CFG))
}

const INFO: &str = r#"[{"name":"a","origin":"trained","n_answers":null},
    {"name":"b","origin":"trained","n_answers":10},{"name":"c","origin":"added","n_answers":2}]"#;

fn prior_tensors(p: usize) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let mut cov = vec![0.0; p * p];
    (0..p).for_each(|i| cov[i * p + i] = 2.0);
    vec![
        ("prior.mean", vec![p], vec![0.5; p]),
        ("prior.cov", vec![p, p], cov),
    ]
}

fn answer_tensors(k: usize, correct: f32) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    vec![
        ("answers.alpha", vec![k, CFG.d], rand(k * CFG.d, 3)),
        ("answers.beta", vec![k], vec![0.1; k]),
        ("answers.correct", vec![k], vec![correct; k]),
    ]
}

#[test]
fn v2_files_load_with_llm_info_prior_and_answers() {
    let p = CFG.d + 1;
    let mut extra = prior_tensors(p);
    extra.extend(answer_tensors(2, 1.0));
    let w = Weights::from_bytes(&v2(&[("llm_info", INFO)], &extra), "v2").unwrap();
    let info = w.llm_info.as_ref().unwrap();
    assert_eq!(info[2].origin, irt_fast::weights::Origin::Added);
    assert_eq!(info[1].n_answers, Some(10));
    assert_eq!(w.prior.as_ref().unwrap().mean, vec![0.5; p]);
    assert_eq!(w.answers.as_ref().unwrap().correct, vec![1.0; 2]);
    // v2 without any of the optional entries, and v1 with them, load too
    let bare = Weights::from_bytes(&v2(&[], &[]), "v2").unwrap();
    assert!(bare.llm_info.is_none() && bare.prior.is_none() && bare.answers.is_none());
    let mut t = tensors(&CFG);
    t.extend(prior_tensors(p));
    assert!(Weights::from_bytes(&file(&t, &[], &config_json(&CFG)), "v1").is_ok());
}

#[test]
fn v2_inconsistencies_are_format_errors_naming_the_entry() {
    let p = CFG.d + 1;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (v2(&[("llm_info", "[1,2,3]")], &[]), "llm_info"),
        (
            v2(&[("llm_info", &INFO.replace("\"c\"", "\"z\""))], &[]),
            "llm_names",
        ),
        (
            v2(&[("llm_info", &INFO.replace("added", "guessed"))], &[]),
            "origin",
        ),
        (
            v2(
                &[(
                    "llm_info",
                    &INFO.replace("\"n_answers\":2", "\"n_answers\":null"),
                )],
                &[],
            ),
            "n_answers",
        ),
        (
            v2(&[("llm_info", &INFO.replace("10", "-1"))], &[]),
            "n_answers",
        ),
        (v2(&[], &prior_tensors(p)[..1]), "prior"),
        (v2(&[], &prior_tensors(p - 1)), "prior.mean"),
        (
            v2(&[("llm_info", INFO)], &answer_tensors(3, 1.0)),
            "answers.alpha",
        ),
        (
            v2(&[("llm_info", INFO)], &answer_tensors(2, 0.5)),
            "answers.correct",
        ),
        (v2(&[], &answer_tensors(2, 1.0)), "llm_info"),
        (
            v2(&[("llm_info", INFO)], &answer_tensors(2, 1.0)[..2]),
            "answers",
        ),
    ];
    for (bytes, needle) in cases {
        let msg = format_err(&bytes);
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    // a covariance that is not positive definite
    let mut bad = prior_tensors(p);
    bad[1].2[0] = -1.0;
    assert!(format_err(&v2(&[], &bad)).contains("positive definite"));
}

#[test]
fn with_llms_shares_the_item_network_and_validates() {
    let e = Engine::new(
        Model::new(Weights::from_bytes(&good(), "m").unwrap()),
        Some(2),
    )
    .unwrap();
    let x = rand(5 * CFG.dm, 8);
    let p = e.predict_proba(&x, 5).unwrap();
    let (d, th) = (CFG.d, e.model.theta().to_vec());
    // keep LLMs c and a, in that order, and add "new" with a's θ and b + 0
    let mut theta = th[2 * d..3 * d].to_vec();
    theta.extend_from_slice(&th[..d]);
    theta.extend_from_slice(&th[..d]);
    let lb = e.model.llm_bias();
    let bias = vec![lb[2], lb[0], lb[0]];
    let info = r#"[{"name":"c","origin":"trained","n_answers":null},
        {"name":"a","origin":"trained","n_answers":null},{"name":"new","origin":"added","n_answers":1}]"#;
    let names = vec!["c".to_string(), "a".to_string(), "new".to_string()];
    let e2 = e
        .with_llms(names.clone(), theta.clone(), bias.clone(), info, None)
        .unwrap();
    assert_eq!(e2.model.config.n_llms, 3);
    assert!(e2.model.config_json.contains("\"n_llms\":3"));
    let p2 = e2.predict_proba(&x, 5).unwrap();
    for i in 0..5 {
        assert_eq!(p2[i * 3], p[i * 3 + 2]);
        assert_eq!(p2[i * 3 + 1], p[i * 3]);
        assert_eq!(p2[i * 3 + 2], p[i * 3]);
    }
    assert_eq!(e.model.llm_names, ["a", "b", "c"]); // the original is unchanged
    let input_err = |r: Result<Engine, Error>, needle: &str| match r {
        Err(Error::Input(m)) => assert!(m.contains(needle), "{needle}: {m}"),
        Err(other) => panic!("{needle}: expected an input error, got {other}"),
        Ok(_) => panic!("{needle}: accepted"),
    };
    let dup = vec!["c".to_string(), "c".to_string(), "new".to_string()];
    input_err(
        e.with_llms(dup, theta.clone(), bias.clone(), info, None),
        "twice",
    );
    input_err(
        e.with_llms(names.clone(), theta[1..].to_vec(), bias.clone(), info, None),
        "theta",
    );
    let mut nan = theta.clone();
    nan[d + 1] = f32::NAN;
    input_err(
        e.with_llms(names.clone(), nan, bias.clone(), info, None),
        "LLM 1",
    );
    input_err(
        e.with_llms(names.clone(), theta.clone(), bias[1..].to_vec(), info, None),
        "bias",
    );
    input_err(
        e.with_llms(names.clone(), theta.clone(), bias.clone(), "[]", None),
        "llm_info",
    );
    let answers = irt_fast::weights::Answers {
        alpha: vec![0.0; 2 * d],
        beta: vec![0.0; 2],
        correct: vec![1.0; 2],
    };
    input_err(
        e.with_llms(
            names.clone(),
            theta.clone(),
            bias.clone(),
            info,
            Some(answers),
        ),
        "answers",
    );
    input_err(
        e.with_llms(vec![], vec![], vec![], "[]", None),
        "at least one",
    );
}

#[test]
fn non_regular_files_and_lying_headers_are_refused_without_reading() {
    let r = Engine::load(std::path::Path::new("/dev/zero"), None);
    assert!(matches!(r, Err(Error::Io { .. })), "{:?}", r.err());
    let dir = std::env::temp_dir().join(format!("irt_fast_hdr_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let mut bytes = good();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let msg = match Engine::load(&path, None) {
        Err(e @ Error::Format { .. }) => e.to_string(),
        other => panic!("expected a format error, got {:?}", other.err()),
    };
    assert!(msg.contains("header claims"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_weights_are_refused_and_overflowing_inputs_name_the_rows() {
    let mut t = tensors(&CFG);
    tensor(&mut t, "experts.w1").2[7] = 1.7e38; // one flipped exponent bit
    assert!(format_err(&file(&t, &[], &config_json(&CFG))).contains("experts.w1"));
    let e = Engine::new(
        Model::new(Weights::from_bytes(&good(), "m").unwrap()),
        Some(1),
    )
    .unwrap();
    let mut x = rand(4 * CFG.dm, 2);
    x[2 * CFG.dm..3 * CFG.dm].fill(3e38);
    let row_2 = |r: Result<(), Error>| match r {
        Err(Error::Input(m)) => assert!(m.contains("[2]"), "{m}"),
        other => panic!("expected an input error naming row 2, got {other:?}"),
    };
    row_2(e.predict_proba(&x, 4).map(|_| ()));
    row_2(e.item_params(&x, 4).map(|_| ()));
    let spec = RouteSpec {
        candidates: vec![0, 1, 2],
        cost: None,
        rule: Rule::Best,
    };
    row_2(e.route(&x, 4, &spec).map(|_| ()));
    row_2(e.predict_accuracy(&x, 4, None).map(|_| ()));
}

#[test]
fn predict_accuracy_with_more_groups_than_memory_is_a_memory_error() {
    let e = Engine::new(
        Model::new(Weights::from_bytes(&good(), "m").unwrap()),
        Some(1),
    )
    .unwrap();
    let x = rand(2 * CFG.dm, 2);
    let r = e.predict_accuracy(&x, 2, Some((&[0, 1], usize::MAX / 2)));
    assert!(matches!(r, Err(Error::Memory(_))), "{:?}", r.err());
}

#[test]
fn subnormal_weights_are_flushed_at_load_and_counted() {
    let sub = f32::from_bits(0x000A_E398); // about 1e-39
    let mut t = tensors(&CFG);
    let mut planted = 0;
    for name in [
        "experts.w1",
        "experts.w2",
        "gate.weight",
        "theta",
        "alpha.weight",
    ] {
        let v = &mut tensor(&mut t, name).2;
        for i in (0..v.len()).step_by(7) {
            v[i] = if i % 2 == 0 { sub } else { -sub };
            planted += 1;
        }
    }
    let mut zeroed = t.clone();
    for (_, _, v) in zeroed.iter_mut() {
        v.iter_mut()
            .filter(|x| x.is_subnormal())
            .for_each(|x| *x = 0.0);
    }
    let bytes = file(&t, &[], &config_json(&CFG));
    // counted from the bits, also on a thread whose own arithmetic reads subnormals as zero
    let on_daz_thread = std::thread::spawn({
        let bytes = bytes.clone();
        move || {
            irt_fast::kernels::ftz::set_flush_to_zero();
            Weights::from_bytes(&bytes, "m").unwrap().flushed_subnormals
        }
    });
    assert_eq!(on_daz_thread.join().unwrap(), planted);
    let w = Weights::from_bytes(&bytes, "m").unwrap();
    assert_eq!(w.flushed_subnormals, planted);
    for (name, _, _) in &t {
        assert!(!w.tensor(name).iter().any(|v| v.is_subnormal()), "{name}");
    }
    let clean = Weights::from_bytes(&file(&zeroed, &[], &config_json(&CFG)), "m").unwrap();
    assert_eq!(clean.flushed_subnormals, 0);
    let x = rand(40 * CFG.dm, 3);
    let e = Engine::new(Model::new(w), Some(2)).unwrap();
    let want = Engine::new(Model::new(clean), Some(2)).unwrap();
    assert_eq!(
        e.predict_proba(&x, 40).unwrap(),
        want.predict_proba(&x, 40).unwrap()
    );
    // the count reaches a loaded engine, and LLMs added later are flushed too
    let path = std::env::temp_dir().join(format!("irt_fast_sub_{}.st", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let loaded = Engine::load(&path, Some(1));
    std::fs::remove_file(&path).unwrap();
    let loaded = loaded.unwrap();
    assert_eq!(loaded.flushed_subnormals(), planted);
    let (d, mut theta) = (CFG.d, loaded.model.theta()[..CFG.d].to_vec());
    theta[1] = sub;
    let info = r#"[{"name":"a","origin":"trained","n_answers":null}]"#;
    let e1 = loaded
        .with_llms(vec!["a".into()], theta, vec![sub], info, None)
        .unwrap();
    assert_eq!(e1.flushed_subnormals(), planted + 2);
    assert_eq!(e1.model.theta()[1], 0.0);
    assert_eq!(e1.model.llm_bias()[0], 0.0);
    assert_eq!(e1.model.theta().len(), d);
}
