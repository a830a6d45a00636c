//! Transfer safety for encoders on real data (all-MiniLM-L6-v2, SST-2, AG News, Rotten
//! Tomatoes): per-layer CKA and representation MMD, and the encoder gate ranking candidate
//! sources for SST-2 over 3 seeds. Prints the markdown tables of docs/safety-transformers.md.
//!
//! ```text
//! FORGE_MINILM_DIR=/path/to/all-minilm-l6-v2 FORGE_TEXT_DATA_DIR=/path/to/text \
//!   cargo run --release -p forge-safety --example encoder_gate [-- --quick]
//! ```
//!
//! Candidates in the gate (the encoder stays frozen; heads are multinomial logistic
//! regressions on its mean-pooled last layer, fitted on the source task):
//! - `minilm+rt`: pretrained MiniLM with a Rotten Tomatoes sentiment head (a sensible source);
//! - `minilm+rt-shuffled`: the same encoder with a head fitted on shuffled RT labels;
//! - `minilm+agnews`: the same encoder with an AG News topic head (an unrelated source task);
//! - `random+rt`: a randomly initialised encoder of the same shape (seeded) with its own RT head.
//!
//! With fine-tuned checkpoints from `crates/forge-models/examples/sst2_recipe.rs --save-models DIR`:
//! - `--finetuned DIR` (an SST-2 fine-tune): Part A adds per-layer CKA between the pretrained and
//!   the fine-tuned encoder on the same SST-2 sentences;
//! - `--shuffled-finetune DIR` (a fine-tune on shuffled SST-2 labels, `--shuffle-labels`): the gate
//!   gets the candidate `ft-shuffled`, that model's own encoder and its own classifier head (a
//!   source that was trained on the target's task, with the labels destroyed).

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use forge_classical::fit_softmax;
use forge_data::text::{ag_news, rotten_tomatoes, sst2, TextDataset, TextSplit};
use forge_linalg::rng::{permutation, seeded_rng};
use forge_models::representations::{encode_in_batches, extract_representations};
use forge_models::{
    AnyClassifier, AnyEncoder, BertModel, HiddenStates, LayerSelection, ModelConfig, ModelFiles,
    Pooling, SequenceClassifier, TextTokenizer,
};
use forge_safety::{
    rank_sources, representation_mmd, CkaConfig, CkaEstimator, CkaReport, EncoderGateConfig,
    RepresentationMmdConfig, SourceCandidate,
};
use std::path::PathBuf;
use std::time::Instant;

const MAX_LEN: usize = 64;
const BATCH: usize = 32;
/// Ridge penalty of the source heads (sklearn's C = 1 / LAM).
const LAM: f64 = 1.0;

struct Sizes {
    cka: usize,
    target: usize,
    source: usize,
    seeds: u64,
}

fn env_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn sample(d: &TextDataset, n: usize, seed: u64) -> Result<TextDataset> {
    let p = permutation(d.len(), &mut seeded_rng(seed));
    Ok(d.select(&p[..n.min(d.len())])?)
}

fn features<E: HiddenStates + ?Sized>(
    enc: &E,
    tok: &TextTokenizer,
    texts: &[String],
    layers: &LayerSelection,
    what: &str,
) -> Result<Vec<Tensor>> {
    let t0 = Instant::now();
    let batches = encode_in_batches(tok, texts, BATCH, &Device::Cpu)?;
    let r = extract_representations(enc, &batches, layers, Pooling::Mean, |p| {
        if p.batches_done == p.batches_total {
            eprintln!(
                "  {what}: {} sentences in {:.1} s",
                p.examples_done,
                t0.elapsed().as_secs_f64()
            );
        }
    })?;
    Ok(r.features
        .into_iter()
        .map(|t| t.to_dtype(DType::F64))
        .collect::<candle_core::Result<_>>()?)
}

fn labels_u32(d: &TextDataset) -> Vec<u32> {
    d.labels.iter().map(|&l| l as u32).collect()
}

/// A softmax head fitted on `x` / `labels`, and its probabilities on `target`.
fn head_probs(x: &Tensor, labels: &[u32], classes: usize, target: &Tensor) -> Result<Tensor> {
    let y = Tensor::from_vec(
        labels.iter().map(|&l| l as f64).collect::<Vec<_>>(),
        labels.len(),
        &Device::Cpu,
    )?;
    let m = fit_softmax(x, &y, classes, LAM)?;
    Ok(m.predict_proba(target)?)
}

/// The class probabilities of a fine-tuned classifier checkpoint on `texts` (eval mode).
fn classifier_probs(files: &ModelFiles, tok: &TextTokenizer, texts: &[String]) -> Result<Tensor> {
    let model = AnyClassifier::from_files(files, None, 0, &Device::Cpu)?;
    let mut out = Vec::new();
    for b in encode_in_batches(tok, texts, BATCH, &Device::Cpu)? {
        let logits = model.forward(&b.input_ids, Some(&b.attention_mask))?;
        out.push(candle_nn::ops::softmax_last_dim(
            &logits.to_dtype(DType::F64)?,
        )?);
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// `--flag VALUE` from the command line.
fn arg_value(flag: &str) -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
}

fn layer_name(i: usize) -> String {
    if i == 0 {
        "emb".into()
    } else {
        format!("L{i}")
    }
}

fn print_matrix(title: &str, r: &CkaReport) {
    println!("\n{title}\n");
    println!(
        "| | {} |",
        r.cols
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(r.cols.len()));
    for (name, row) in r.rows.iter().zip(&r.values) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.3}")).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let finetuned = match arg_value("--finetuned") {
        Some(d) => {
            Some(ModelFiles::from_dir(&d).with_context(|| format!("--finetuned {}", d.display()))?)
        }
        None => None,
    };
    let shuffled_ft = match arg_value("--shuffled-finetune") {
        Some(d) => Some(
            ModelFiles::from_dir(&d)
                .with_context(|| format!("--shuffled-finetune {}", d.display()))?,
        ),
        None => None,
    };
    let sizes = if quick {
        Sizes {
            cka: 120,
            target: 150,
            source: 300,
            seeds: 1,
        }
    } else {
        Sizes {
            cka: 300,
            target: 300,
            source: 600,
            seeds: 3,
        }
    };
    let model_dir = env_dir("FORGE_MINILM_DIR", "../shared/models/all-minilm-l6-v2");
    let data_dir = env_dir("FORGE_TEXT_DATA_DIR", "../shared/data/text");
    let files = ModelFiles::from_dir(&model_dir)
        .with_context(|| format!("MiniLM folder {}", model_dir.display()))?;
    let tok = TextTokenizer::from_file(
        files
            .tokenizer
            .as_ref()
            .context("the model folder has no tokenizer.json")?,
        MAX_LEN,
    )?;
    let pretrained = AnyEncoder::from_files(&files, &Device::Cpu)?;
    let ModelConfig::Bert(bert_cfg) = files.model_config()? else {
        anyhow::bail!("expected a BERT-family checkpoint (MiniLM)");
    };
    let sst_dev = sst2(&data_dir, TextSplit::Eval)?;
    let ag_test = ag_news(&data_dir, TextSplit::Eval)?;
    let ag_train = ag_news(&data_dir, TextSplit::Train)?;
    let rt = rotten_tomatoes(&data_dir)?;
    println!(
        "# encoder_gate: all-MiniLM-L6-v2, mean pooling, max_len {MAX_LEN}; sizes: CKA {} per set, target {} SST-2 dev sentences, source heads on {} sentences, {} seed(s)",
        sizes.cka, sizes.target, sizes.source, sizes.seeds
    );

    // ---- Part A: per-layer CKA and representation shift -----------------------------------
    let t0 = Instant::now();
    let sst_a = sample(&sst_dev, sizes.cka, 100)?;
    let ag_a = sample(&ag_test, sizes.cka, 101)?;
    let all = LayerSelection::All;
    let f_sst = features(&pretrained, &tok, &sst_a.texts, &all, "pretrained, SST-2")?;
    let f_ag = features(&pretrained, &tok, &ag_a.texts, &all, "pretrained, AG News")?;
    let random0 = BertModel::new_random(&bert_cfg, 0, &Device::Cpu)?;
    let f_rand = features(&random0, &tok, &sst_a.texts, &all, "random-init, SST-2")?;
    drop(random0);
    let f_ft = match &finetuned {
        Some(files) => {
            let enc = AnyEncoder::from_files(files, &Device::Cpu)?;
            Some(features(
                &enc,
                &tok,
                &sst_a.texts,
                &all,
                "SST-2 fine-tuned, SST-2",
            )?)
        }
        None => None,
    };
    let named = |v: &[Tensor]| -> Vec<(String, Tensor)> {
        v.iter()
            .enumerate()
            .map(|(i, t)| (layer_name(i), t.clone()))
            .collect()
    };
    let cfg = CkaConfig::linear(CkaEstimator::Unbiased);
    let cka_sst = CkaReport::compute(&named(&f_sst), &named(&f_sst), &cfg)?;
    let cka_ag = CkaReport::compute(&named(&f_ag), &named(&f_ag), &cfg)?;
    let cka_rand = CkaReport::compute(&named(&f_sst), &named(&f_rand), &cfg)?;
    let cka_ft = match &f_ft {
        Some(f) => Some(CkaReport::compute(&named(&f_sst), &named(f), &cfg)?),
        None => None,
    };
    let cka_biased = CkaReport::compute(
        &named(&f_sst),
        &named(&f_rand),
        &CkaConfig::linear(CkaEstimator::Biased),
    )?;
    print_matrix(
        &format!(
            "## Layer x layer linear CKA (unbiased), pretrained MiniLM on {} SST-2 dev sentences",
            sizes.cka
        ),
        &cka_sst,
    );
    print_matrix(
        &format!("## Layer x layer linear CKA (unbiased), pretrained MiniLM on {} AG News test sentences", sizes.cka),
        &cka_ag,
    );
    println!("\n## Per layer: SST-2 vs AG News, and pretrained vs random-init (SST-2)\n");
    println!("| layer | CKA(l, l+1) SST-2 | CKA(l, l+1) AG News | CKA(l, last) SST-2 | CKA(l, last) AG News | MMD^2 SST-2 vs AG News (32 PCs) | p | CKA pretrained vs random-init, unbiased | biased | CKA pretrained vs SST-2 fine-tuned, unbiased |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let last = f_sst.len() - 1;
    let mmd_cfg = RepresentationMmdConfig {
        mmd: forge_safety::MmdConfig {
            n_permutations: 200,
            ..Default::default()
        },
        ..Default::default()
    };
    for l in 0..=last {
        let next = |r: &CkaReport| {
            if l < last {
                format!("{:.3}", r.values[l][l + 1])
            } else {
                "".into()
            }
        };
        let shift = representation_mmd(&f_sst[l], &f_ag[l], &mmd_cfg)?;
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.4} | {:.3} | {:.3} | {} |",
            layer_name(l),
            next(&cka_sst),
            next(&cka_ag),
            cka_sst.values[l][last],
            cka_ag.values[l][last],
            shift.mmd.mmd2,
            shift.mmd.p_value,
            cka_rand.values[l][l],
            cka_biased.values[l][l],
            cka_ft
                .as_ref()
                .map_or("-".into(), |r| format!("{:.3}", r.values[l][l])),
        );
    }
    eprintln!("part A: {:.1} s", t0.elapsed().as_secs_f64());

    // ---- Part B: the encoder gate for SST-2, per seed --------------------------------------
    let last_only = LayerSelection::Last;
    let one = |v: Vec<Tensor>| v.into_iter().next().expect("one layer");
    let rt_src = sample(&rt, sizes.source, 200)?;
    let ag_src = sample(&ag_train, sizes.source, 201)?;
    let rt_y = labels_u32(&rt_src);
    let ag_y = labels_u32(&ag_src);
    let f_rt = one(features(
        &pretrained,
        &tok,
        &rt_src.texts,
        &last_only,
        "pretrained, RT",
    )?);
    let f_agsrc = one(features(
        &pretrained,
        &tok,
        &ag_src.texts,
        &last_only,
        "pretrained, AG News train",
    )?);
    let shuffled_enc = match &shuffled_ft {
        Some(files) => Some(AnyEncoder::from_files(files, &Device::Cpu)?),
        None => None,
    };
    let mut shuffled = rt_y.clone();
    let p = permutation(shuffled.len(), &mut seeded_rng(7));
    shuffled = p.iter().map(|&i| shuffled[i]).collect();
    println!(
        "\n## Encoder gate for SST-2 (target: {} labelled SST-2 dev sentences per seed)\n",
        sizes.target
    );
    println!("| seed | rank | candidate | verdict | LogME | LogME gain over null (p) | LEEP | LEEP gain (p) | CKA to pretrained | source-target MMD p | reasons |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for seed in 0..sizes.seeds {
        let t1 = Instant::now();
        let target = sample(&sst_dev, sizes.target, 1_000 + seed)?;
        let y = labels_u32(&target);
        let f_t = one(features(
            &pretrained,
            &tok,
            &target.texts,
            &last_only,
            "pretrained, target",
        )?);
        let random = BertModel::new_random(&bert_cfg, 10 + seed, &Device::Cpu)?;
        let f_rt_rand = one(features(
            &random,
            &tok,
            &rt_src.texts,
            &last_only,
            "random-init, RT",
        )?);
        let f_t_rand = one(features(
            &random,
            &tok,
            &target.texts,
            &last_only,
            "random-init, target",
        )?);
        let mut candidates = vec![
            SourceCandidate::new("minilm+rt", f_t.clone())
                .with_source_probs(head_probs(&f_rt, &rt_y, 2, &f_t)?)
                .with_source_features(f_rt.clone()),
            SourceCandidate::new("minilm+rt-shuffled", f_t.clone())
                .with_source_probs(head_probs(&f_rt, &shuffled, 2, &f_t)?)
                .with_source_features(f_rt.clone()),
            SourceCandidate::new("minilm+agnews", f_t.clone())
                .with_source_probs(head_probs(&f_agsrc, &ag_y, 4, &f_t)?)
                .with_source_features(f_agsrc.clone()),
            SourceCandidate::new("random+rt", f_t_rand.clone())
                .with_source_probs(head_probs(&f_rt_rand, &rt_y, 2, &f_t_rand)?)
                .with_source_features(f_rt_rand),
        ];
        if let (Some(files), Some(enc)) = (&shuffled_ft, &shuffled_enc) {
            let f_t_shuf = one(features(
                enc,
                &tok,
                &target.texts,
                &last_only,
                "shuffled-label fine-tune, target",
            )?);
            candidates.push(
                SourceCandidate::new("ft-shuffled", f_t_shuf).with_source_probs(classifier_probs(
                    files,
                    &tok,
                    &target.texts,
                )?),
            );
        }
        let mut gate_cfg = EncoderGateConfig::default().with_seed(seed);
        gate_cfg.representation.mmd.n_permutations = 200;
        let r = rank_sources(&candidates, &y, Some(&f_t), &gate_cfg)?;
        for a in &r.ranking {
            let (leep, leep_gain) = match (&a.leep, &a.leep_test) {
                (Some(l), Some(t)) => (
                    format!("{:.4}", l.score),
                    format!("{:.4} ({:.3})", l.gain, t.p_value),
                ),
                _ => ("".into(), "".into()),
            };
            println!(
                "| {seed} | {} | {} | {:?} | {:.4} | {:.4} ({:.3}) | {leep} | {leep_gain} | {:.3} | {} | {} |",
                a.rank,
                a.name,
                a.verdict,
                a.logme.score,
                a.logme_test.gain,
                a.logme_test.p_value,
                a.cka_to_reference.unwrap_or(f64::NAN),
                a.representation_shift
                    .as_ref()
                    .map_or("".into(), |s| format!("{:.3}", s.mmd.p_value)),
                a.reasons.join("; ").replace('|', "/"),
            );
        }
        eprintln!("seed {seed}: {:.1} s", t1.elapsed().as_secs_f64());
    }
    Ok(())
}
