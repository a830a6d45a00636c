//! Cross-task transfer with EWC (issue 9): all-MiniLM-L6-v2 fine-tuned on SST-2, then the head
//! replaced 2 -> 4 classes and the model trained on AG News, three ways:
//!
//! - **no EWC**: plain fine-tuning on AG News;
//! - **EWC** (Kirkpatrick et al. 2017): penalty `(lambda/2) sum F (theta - theta*)^2` with the
//!   SST-2 Fisher, anchored at the SST-2 solution; lambda chosen from a small grid on validation
//!   splits (held-out SST-2 and AG News training sentences, criterion: mean of the two accuracies)
//!   with the first seed, then reused for the others;
//! - **online EWC** (Schwarz et al. 2018): with only two tasks online EWC equals EWC (up to
//!   lambda -> gamma lambda), so here each AG News epoch ends a "task": after it, the AG News Fisher
//!   is folded in (`F <- gamma F + F_AG`) and the anchor moves to the current parameters.
//!
//! - **progressive unfreezing + discriminative learning rates** (Howard & Ruder 2018, ULMFiT,
//!   sections 3.2-3.3) instead of all-at-once fine-tuning, no EWC: the head trains first, then the
//!   groups below it are unfrozen from the top, evenly spread so that every group trains in the
//!   last epoch, group `d` from the top at `lr / 2.6^d` (`TransferScheduler`).
//!
//! Reported per method: AG News test accuracy, SST-2 dev accuracy with the SST-2 head re-attached
//! (retention), and backbone drift from the SST-2 solution (L2 and relative to the SST-2 norm,
//! over every parameter but the head). Mean +- std over seeds, written as a Markdown table.
//! Sizes are small so that it runs on a busy 2-core machine; see the defaults below.
//!
//! ```text
//! nice -n 10 cargo run --release -p forge-bench --example ewc_cross_task -- \
//!     --model ../shared/models/all-minilm-l6-v2 --data ../shared/data/text \
//!     --seeds 0,1,2 --out docs/ewc-cross-task.md
//! ```

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use forge_data::text::{ag_news, sst2, TextSplit};
use forge_ewc::{
    fisher_diagonal, Ewc, EwcConfig, FisherConfig, FisherDiagonal, FisherEstimator, ParamFilter,
    Targets,
};
use forge_lora::named_trainable;
use forge_models::train::{evaluate, fine_tune, fine_tune_with, Hooks, TextDataset, TrainConfig};
use forge_models::transfer::{replace_head, set_head, TransferScheduler, HF_INIT_STD};
use forge_models::{AnyClassifier, ModelFiles, SequenceClassifier, TextTokenizer};
use std::path::PathBuf;
use std::time::Instant;

const MAX_LEN: usize = 64;

struct Args {
    model: PathBuf,
    data: PathBuf,
    seeds: Vec<u64>,
    sst_train: usize,
    sst_val: usize,
    sst_dev: usize,
    ag_train: usize,
    ag_val: usize,
    ag_test: usize,
    sst_epochs: usize,
    ag_epochs: usize,
    fisher_samples: usize,
    lambdas: Vec<f64>,
    gamma: f64,
    out: Option<PathBuf>,
}

fn parse_list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(v.split(',')
        .map(|s| s.trim().parse())
        .collect::<std::result::Result<_, _>>()?)
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        model: "../shared/models/all-minilm-l6-v2".into(),
        data: "../shared/data/text".into(),
        seeds: vec![0, 1, 2],
        sst_train: 600,
        sst_val: 150,
        sst_dev: 400,
        ag_train: 400,
        ag_val: 150,
        ag_test: 400,
        sst_epochs: 2,
        ag_epochs: 2,
        fisher_samples: 200,
        lambdas: vec![1e3, 1e4, 1e5],
        gamma: 0.9,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--model" => a.model = v.into(),
            "--data" => a.data = v.into(),
            "--seeds" => a.seeds = parse_list(&v)?,
            "--sst-train" => a.sst_train = v.parse()?,
            "--sst-val" => a.sst_val = v.parse()?,
            "--sst-dev" => a.sst_dev = v.parse()?,
            "--ag-train" => a.ag_train = v.parse()?,
            "--ag-val" => a.ag_val = v.parse()?,
            "--ag-test" => a.ag_test = v.parse()?,
            "--sst-epochs" => a.sst_epochs = v.parse()?,
            "--ag-epochs" => a.ag_epochs = v.parse()?,
            "--fisher-samples" => a.fisher_samples = v.parse()?,
            "--lambdas" => a.lambdas = parse_list(&v)?,
            "--gamma" => a.gamma = v.parse()?,
            "--out" => a.out = Some(v.into()),
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

/// The data of one run: tokenised train / validation / test sets of both tasks.
struct Data {
    sst_train: TextDataset,
    sst_val: TextDataset,
    sst_dev: TextDataset,
    ag_train: TextDataset,
    ag_val: TextDataset,
    ag_test: TextDataset,
}

fn to_u32(l: &[usize]) -> Vec<u32> {
    l.iter().map(|&x| x as u32).collect()
}

/// Disjoint seeded samples: the first `n_a` and the next `n_b` of a seeded shuffle.
fn split(
    d: &forge_data::text::TextDataset,
    n_a: usize,
    n_b: usize,
    seed: u64,
    tok: &TextTokenizer,
) -> Result<(TextDataset, TextDataset)> {
    let s = d.shuffled(seed)?;
    if s.texts.len() < n_a + n_b {
        bail!(
            "{} has {} examples, {} needed",
            d.name,
            s.texts.len(),
            n_a + n_b
        );
    }
    let a = TextDataset::new(&s.texts[..n_a], &to_u32(&s.labels[..n_a]), tok)?;
    let b = TextDataset::new(
        &s.texts[n_a..n_a + n_b],
        &to_u32(&s.labels[n_a..n_a + n_b]),
        tok,
    )?;
    Ok((a, b))
}

fn load_data(args: &Args, tok: &TextTokenizer, seed: u64) -> Result<Data> {
    let sst = sst2(&args.data, TextSplit::Train)?;
    let (sst_train, sst_val) = split(&sst, args.sst_train, args.sst_val, seed, tok)?;
    let sst_eval = sst2(&args.data, TextSplit::Eval)?;
    let (sst_dev, _) = split(
        &sst_eval,
        args.sst_dev.min(sst_eval.texts.len()),
        0,
        1000,
        tok,
    )?;
    let ag = ag_news(&args.data, TextSplit::Train)?;
    let (ag_train, ag_val) = split(&ag, args.ag_train, args.ag_val, seed + 7, tok)?;
    let ag_eval = ag_news(&args.data, TextSplit::Eval)?;
    let (ag_test, _) = split(&ag_eval, args.ag_test, 0, 1001, tok)?;
    Ok(Data {
        sst_train,
        sst_val,
        sst_dev,
        ag_train,
        ag_val,
        ag_test,
    })
}

fn train_config(seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        eval_batch_size: 64,
        max_length: MAX_LEN,
        learning_rate: 5e-5,
        weight_decay: 0.01,
        warmup_ratio: 0.06,
        max_grad_norm: Some(1.0),
        seed,
        ..Default::default()
    }
}

/// The true Fisher (exact over the classes) of the model's current head on `data`'s first `n`.
fn fisher_of(
    model: &mut AnyClassifier,
    data: &TextDataset,
    n: usize,
) -> Result<(Vec<(String, Var)>, FisherDiagonal)> {
    let params = named_trainable(model);
    model.set_training(false);
    let dev = Device::Cpu;
    let labels: Vec<usize> = data.labels().iter().map(|&l| l as usize).collect();
    let mut config = FisherConfig::new(FisherEstimator::TrueExact);
    config.max_samples = Some(n);
    let m: &AnyClassifier = model;
    let f = fisher_diagonal(
        &params,
        Targets::Labels(&labels),
        |idx: &[usize]| -> forge_models::Result<Tensor> {
            let b = data.batch(idx, MAX_LEN, &dev)?;
            m.forward(&b.input_ids, Some(&b.attention_mask))
        },
        &config,
    )?;
    Ok((params, f))
}

fn is_head(name: &str) -> bool {
    name.starts_with("classifier.")
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Plain,
    Progressive,
    Ewc(f64),
    Online(f64),
}

#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    ag: f64,
    sst: f64,
    drift_l2: f64,
    drift_rel: f64,
    seconds: f64,
}

/// The SST-2-trained model, its Fisher and backbone snapshot, reused by every method of a seed.
struct Base {
    model: AnyClassifier,
    sst_head: Option<forge_lora::LoraLinear>,
    snapshot: Vec<(String, Tensor)>,
    fisher: FisherDiagonal,
    sst_dev_acc: f64,
}

fn sst_phase(args: &Args, files: &ModelFiles, data: &Data, seed: u64) -> Result<Base> {
    let mut model = AnyClassifier::from_files(files, Some(2), seed, &Device::Cpu)?;
    fine_tune(
        &mut model,
        &data.sst_train,
        None,
        &train_config(seed, args.sst_epochs),
        &mut Hooks::new(),
    )?;
    let sst_dev_acc = evaluate(&mut model, &data.sst_dev, &train_config(seed, 1))?.accuracy;
    let t = Instant::now();
    let (params, fisher) = fisher_of(&mut model, &data.sst_train, args.fisher_samples)?;
    eprintln!(
        "seed {seed}: SST-2 dev acc {sst_dev_acc:.4}; Fisher ({} samples, true exact) trace {:.4e} in {:.0} s",
        fisher.n_samples(),
        fisher.trace()?,
        t.elapsed().as_secs_f64()
    );
    let snapshot = params
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Base {
        model,
        sst_head: None,
        snapshot,
        fisher,
        sst_dev_acc,
    })
}

/// Put the SST-2 solution back (backbone values and head), then a fresh seeded 4-class head.
fn reset(base: &mut Base, seed: u64) -> Result<()> {
    if let Some(h) = base.sst_head.take() {
        set_head(&mut base.model, h)?;
    }
    let params = named_trainable(&mut base.model);
    for ((name, var), (sname, saved)) in params.iter().zip(&base.snapshot) {
        if name != sname {
            bail!("parameter order changed: {name} vs {sname}");
        }
        var.set(saved)?;
    }
    base.sst_head = Some(replace_head(&mut base.model, 4, HF_INIT_STD, seed)?);
    Ok(())
}

/// Accuracy on the SST-2 set `data` with the SST-2 head re-attached.
fn sst_retention(base: &mut Base, data: &TextDataset, seed: u64) -> Result<f64> {
    let sst_head = base.sst_head.take().context("no SST-2 head kept")?;
    let ag_head = set_head(&mut base.model, sst_head)?;
    let acc = evaluate(&mut base.model, data, &train_config(seed, 1))?.accuracy;
    base.sst_head = Some(set_head(&mut base.model, ag_head)?);
    Ok(acc)
}

/// Train on AG News with `method` from the SST-2 solution; evaluate on `ag_eval` and `sst_eval`.
fn ag_phase(
    args: &Args,
    base: &mut Base,
    data: &Data,
    method: Method,
    seed: u64,
    (ag_eval, sst_eval): (&TextDataset, &TextDataset),
) -> Result<Outcome> {
    let t = Instant::now();
    reset(base, seed)?;
    let params = named_trainable(&mut base.model);
    let filter = ParamFilter::new()
        .skip_shape_mismatch(true)
        .exclude_if(is_head);
    let lambda = match method {
        Method::Plain | Method::Progressive => 0.0,
        Method::Ewc(l) | Method::Online(l) => l,
    };
    // Anchored at the SST-2 solution (just restored); also measures drift for the plain run.
    let (mut ewc, _) = Ewc::new_filtered(
        &params,
        &base.fisher,
        EwcConfig::new(lambda).with_gamma(args.gamma),
        &filter,
    )?;
    let drift_ref = ewc.clone();
    match method {
        Method::Plain => {
            fine_tune(
                &mut base.model,
                &data.ag_train,
                None,
                &train_config(seed, args.ag_epochs),
                &mut Hooks::new(),
            )?;
        }
        Method::Progressive => {
            let n_groups = forge_models::transfer::layer_groups(&mut base.model).len();
            let mut plan = TransferScheduler::ulmfit(5e-5, 0.01);
            // Spread the unfreezing so that every group trains in the last epoch.
            plan.groups_per_epoch = if args.ag_epochs > 1 {
                (n_groups - 1).div_ceil(args.ag_epochs - 1).max(1)
            } else {
                n_groups
            };
            fine_tune_with(
                &mut base.model,
                &data.ag_train,
                None,
                &train_config(seed, args.ag_epochs),
                &mut Hooks::new(),
                &mut plan,
            )?;
            // Leave every parameter trainable again for the next method.
            forge_lora::unfreeze_base(&mut base.model);
        }
        Method::Ewc(_) => {
            let e = &ewc;
            let mut hooks =
                Hooks::new().penalty(move || -> candle_core::Result<Tensor> { Ok(e.penalty()?) });
            fine_tune(
                &mut base.model,
                &data.ag_train,
                None,
                &train_config(seed, args.ag_epochs),
                &mut hooks,
            )?;
        }
        Method::Online(_) => {
            for epoch in 0..args.ag_epochs {
                {
                    let e = &ewc;
                    let mut hooks = Hooks::new()
                        .penalty(move || -> candle_core::Result<Tensor> { Ok(e.penalty()?) });
                    fine_tune(
                        &mut base.model,
                        &data.ag_train,
                        None,
                        &train_config(seed + epoch as u64, 1),
                        &mut hooks,
                    )?;
                }
                if epoch + 1 < args.ag_epochs {
                    let (_, f_ag) =
                        fisher_of(&mut base.model, &data.ag_train, args.fisher_samples)?;
                    ewc.update_online(&f_ag)?;
                }
            }
        }
    }
    let ag = evaluate(&mut base.model, ag_eval, &train_config(seed, 1))?.accuracy;
    let drift = drift_ref.anchor_distance()?;
    let sst = sst_retention(base, sst_eval, seed)?;
    Ok(Outcome {
        ag,
        sst,
        drift_l2: drift.l2,
        drift_rel: drift.relative,
        seconds: t.elapsed().as_secs_f64(),
    })
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn main() -> Result<()> {
    forge_models::perf::tune_allocator();
    let args = parse_args()?;
    let files = ModelFiles::from_dir(&args.model)?;
    let tok_path = files.tokenizer.clone().context("no tokenizer.json")?;
    let tok = TextTokenizer::from_file(&tok_path, MAX_LEN)?;
    let t_all = Instant::now();

    let mut chosen_lambda = None;
    let mut selection = Vec::new();
    let names = [
        "no EWC (all at once)",
        "EWC",
        "online EWC",
        "progressive unfreezing + discriminative LRs",
    ];
    let mut rows: Vec<Vec<Outcome>> = vec![Vec::new(); names.len()];
    let mut sst_before = Vec::new();
    for &seed in &args.seeds {
        let data = load_data(&args, &tok, seed)?;
        let mut base = sst_phase(&args, &files, &data, seed)?;
        sst_before.push(base.sst_dev_acc);
        let lambda = match chosen_lambda {
            Some(l) => l,
            None => {
                // Grid search on the validation splits (first seed only).
                let mut best = (f64::MIN, args.lambdas[0]);
                for &l in &args.lambdas {
                    let o = ag_phase(
                        &args,
                        &mut base,
                        &data,
                        Method::Ewc(l),
                        seed,
                        (&data.ag_val, &data.sst_val),
                    )?;
                    let score = (o.ag + o.sst) / 2.0;
                    eprintln!(
                        "  lambda {l:e}: AG val {:.4}, SST-2 val {:.4}, mean {score:.4} ({:.0} s)",
                        o.ag, o.sst, o.seconds
                    );
                    selection.push((l, o.ag, o.sst));
                    if score > best.0 {
                        best = (score, l);
                    }
                }
                chosen_lambda = Some(best.1);
                best.1
            }
        };
        for (k, method) in [
            Method::Plain,
            Method::Ewc(lambda),
            Method::Online(lambda),
            Method::Progressive,
        ]
        .into_iter()
        .enumerate()
        {
            let o = ag_phase(
                &args,
                &mut base,
                &data,
                method,
                seed,
                (&data.ag_test, &data.sst_dev),
            )?;
            eprintln!(
                "  seed {seed} {:<10}: AG test {:.4}, SST-2 dev {:.4} (before {:.4}), drift L2 {:.3} rel {:.4} ({:.0} s)",
                names[k], o.ag, o.sst, base.sst_dev_acc, o.drift_l2, o.drift_rel, o.seconds
            );
            rows[k].push(o);
        }
    }

    let mut md = String::new();
    md.push_str("# Cross-task transfer with EWC: SST-2 -> AG News (all-MiniLM-L6-v2)\n\n");
    md.push_str(&format!(
        "Generated by `crates/forge-bench/examples/ewc_cross_task.rs` in {:.0} min on a busy shared \
         2-core machine (CPU, f32):\n\n```text\nnice -n 10 cargo run --release -p forge-bench --example ewc_cross_task -- \\\n    \
         --seeds {} --sst-train {} --sst-val {} --sst-dev {} --ag-train {} --ag-val {} --ag-test {} \\\n    \
         --sst-epochs {} --ag-epochs {} --fisher-samples {} --lambdas {} --gamma {} --out docs/ewc-cross-task.md\n```\n\n",
        t_all.elapsed().as_secs_f64() / 60.0,
        args.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        args.sst_train, args.sst_val, args.sst_dev, args.ag_train, args.ag_val, args.ag_test,
        args.sst_epochs, args.ag_epochs, args.fisher_samples,
        args.lambdas.iter().map(|l| format!("{l:e}")).collect::<Vec<_>>().join(","),
        args.gamma,
    ));
    md.push_str(&format!(
        "Recipe: MiniLM-L6 + a new 2-class head fine-tuned on {} SST-2 training sentences ({} epochs), \
         then the head replaced by a new 4-class head (seeded, std 0.02) and trained on {} AG News \
         sentences ({} epochs). Both phases: AdamW lr 5e-5, weight decay 0.01 (none on biases/LayerNorm), \
         6% warmup + linear decay, batch 16, max length 64, clipping 1.0. Fisher: true Fisher, exact over \
         the classes (`FisherEstimator::TrueExact`), on the first {} SST-2 training sentences. \
         The penalty covers every parameter except the head. SST-2 retention: accuracy on {} SST-2 dev \
         sentences with the SST-2 head re-attached (before AG News: {:.1} +- {:.1}). AG News: accuracy on \
         {} test sentences. Drift: `||theta - theta_SST2||` over the backbone, and relative to \
         `||theta_SST2||`. Online EWC: each AG News epoch is a task boundary (after it \
         `F <- {} F + F_AG`, anchor moved; with two tasks, online EWC proper equals EWC with lambda \
         scaled by gamma); its epochs are separate `fine_tune` calls, so its learning-rate schedule \
         restarts each epoch. Progressive unfreezing (ULMFiT): head first, the layer groups below it \
         unfrozen from the top so that all train in the last epoch, group d from the top at 5e-5 / 2.6^d; \
         no penalty.\n\n",
        args.sst_train, args.sst_epochs, args.ag_train, args.ag_epochs, args.fisher_samples,
        args.sst_dev,
        100.0 * mean_std(&sst_before).0, 100.0 * mean_std(&sst_before).1,
        args.ag_test, args.gamma,
    ));
    md.push_str(&format!(
        "Lambda chosen on validation splits ({} held-out SST-2 and {} held-out AG News training \
         sentences, criterion: mean of the two accuracies) with seed {}, then used for every seed:\n\n\
         | lambda | AG News val acc | SST-2 val acc (retention) |\n|---|---|---|\n",
        args.sst_val, args.ag_val, args.seeds[0]
    ));
    for (l, ag, sst) in &selection {
        md.push_str(&format!(
            "| {l:e} | {:.1} | {:.1} |\n",
            100.0 * ag,
            100.0 * sst
        ));
    }
    md.push_str(&format!(
        "\nChosen: lambda = {:e}.\n\n| method | AG News acc | SST-2 retention | drift L2 | drift relative | s per run |\n|---|---|---|---|---|---|\n",
        chosen_lambda.unwrap_or(f64::NAN)
    ));
    for (k, name) in names.iter().enumerate() {
        let col = |f: fn(&Outcome) -> f64| mean_std(&rows[k].iter().map(f).collect::<Vec<_>>());
        let (ag, ags) = col(|o| o.ag);
        let (s, ss) = col(|o| o.sst);
        let (d, ds) = col(|o| o.drift_l2);
        let (r, rs) = col(|o| o.drift_rel);
        let (t, _) = col(|o| o.seconds);
        md.push_str(&format!(
            "| {name} | {:.1} +- {:.1} | {:.1} +- {:.1} | {d:.3} +- {ds:.3} | {:.4} +- {:.4} | {t:.0} |\n",
            100.0 * ag, 100.0 * ags, 100.0 * s, 100.0 * ss, r, rs
        ));
    }
    md.push_str(&format!(
        "\nMean +- sample std over {} seeds ({}); accuracies in %.\n",
        args.seeds.len(),
        args.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    println!("{md}");
    if let Some(p) = &args.out {
        forge_linalg::io::write_atomic(p, md.as_bytes())?;
    }
    Ok(())
}
