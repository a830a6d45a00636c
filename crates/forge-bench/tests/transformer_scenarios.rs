//! The transformer scenarios built on `sst2-full-vs-lora` (`sst2-to-agnews`, `sst2-merge`,
//! `sst2-lora-soup`, `cka-layers`, `dl-gate`) end to end on forge-models' tiny fixture models, in one run through the
//! real registry, runner and carbon meter: every record's fields, the models shared between
//! scenarios (trained once), and what each method must show.

mod common;

use forge_bench::scenario::{Mode, RunContext};
use forge_bench::schema::{RunRecord, StrategyKind};
use forge_bench::transformer::{
    CKA_LAYERS, DL_GATE, SST2_FULL_VS_LORA, SST2_LORA_SOUP, SST2_MERGE, SST2_TO_AGNEWS,
};
use forge_bench::{runner, ResultsFile, RunPlan};
use std::path::PathBuf;

fn ctx(model: PathBuf, text: PathBuf) -> RunContext {
    let mut c = forge_bench::context(Mode::Quick, forge_bench::default_data_dir()).unwrap();
    c.model_id = Some(model.display().to_string());
    c.model_dir = Some(model);
    c.text_data_dir = Some(text);
    c
}

fn record<'a>(r: &'a ResultsFile, scenario: &str, strategy: &str) -> &'a RunRecord {
    r.records
        .iter()
        .find(|x| x.scenario == scenario && x.strategy == strategy)
        .unwrap_or_else(|| panic!("no record for {scenario} / {strategy}"))
}

fn extra(r: &RunRecord, key: &str) -> f64 {
    *r.extra_metrics.get(key).unwrap_or_else(|| {
        panic!(
            "{} / {} lacks {key}: {:?}",
            r.scenario, r.strategy, r.extra_metrics
        )
    })
}

#[test]
fn the_scenarios_built_on_sst2_run_end_to_end_and_share_their_models() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model_with_tokenizer("tiny-bert", dir.path());
    let text = common::tiny_sst2(&dir.path().join("text"), 240, 60);
    common::tiny_ag_news(&text, 240, 80);
    let c = ctx(model, text);
    let plan = RunPlan {
        mode: Mode::Quick,
        seeds: vec![0],
        scenarios: Some(
            [
                SST2_FULL_VS_LORA,
                SST2_TO_AGNEWS,
                SST2_MERGE,
                SST2_LORA_SOUP,
                CKA_LAYERS,
                DL_GATE,
            ]
            .map(String::from)
            .to_vec(),
        ),
    };
    let r = common::within(600, move || {
        runner::run(
            &forge_bench::registry().unwrap(),
            &plan,
            &c,
            &mut runner::NoProgress,
        )
        .unwrap()
    });
    assert_eq!(r.records.len(), 3 + 4 + 8 + 5 + 3 + 3);
    for rec in &r.records {
        assert!((0.0..=1.0).contains(&rec.quality), "{rec:?}");
        let m = &rec.training;
        assert!(m.wall_time_s > 0.0 && m.co2_kg > 0.0, "{rec:?}");
        assert_eq!(m.repeats, 1, "measured once: {rec:?}");
        assert!(rec.config.contains_key("model") && rec.config.contains_key("strategy"));
    }
    // convergence curves of full fine-tuning and both LoRA ranks: accuracy before training and
    // after each epoch, the last point the strategy's reported accuracy
    for st in ["full-ft", "lora-r4", "lora-r8"] {
        let c = r
            .convergence
            .iter()
            .find(|c| c.scenario == SST2_FULL_VS_LORA && c.strategy == st)
            .unwrap_or_else(|| panic!("no convergence curve for {st}"));
        let rec = record(&r, SST2_FULL_VS_LORA, st);
        assert_eq!(c.quality.len() as u32, rec.epochs.unwrap() + 1, "{c:?}");
        assert_eq!(*c.quality.last().unwrap(), rec.quality, "{c:?}");
    }
    // all three start from the same function (pretrained encoder + the seed's head; LoRA's B = 0
    // adds exactly nothing): the first point is evaluated once and shared
    let first = |st: &str| {
        r.convergence
            .iter()
            .find(|c| c.scenario == SST2_FULL_VS_LORA && c.strategy == st)
            .map(|c| c.quality[0])
    };
    assert_eq!(first("full-ft"), first("lora-r4"));
    assert_eq!(first("full-ft"), first("lora-r8"));

    // sst2-to-agnews: the SST-2 model of sst2-full-vs-lora is reused, not retrained.
    let full = record(&r, SST2_FULL_VS_LORA, "full-ft");
    let src = r
        .source_costs
        .iter()
        .find(|s| s.scenario == SST2_TO_AGNEWS)
        .expect("source cost");
    assert_eq!(
        src.training, full.training,
        "the source is the full fine-tuning"
    );
    let plain = record(&r, SST2_TO_AGNEWS, "all-at-once");
    assert_eq!(plain.kind, StrategyKind::Baseline);
    assert!((extra(plain, "sst2_before") - full.quality).abs() < 1e-12);
    let ewc = record(&r, SST2_TO_AGNEWS, "ewc");
    for name in ["all-at-once", "ewc", "online-ewc", "progressive"] {
        let x = record(&r, SST2_TO_AGNEWS, name);
        assert!((0.0..=1.0).contains(&extra(x, "sst2_retention")));
        assert!(extra(x, "drift_l2") > 0.0, "{name} moved the backbone");
        assert_eq!(
            x.gradient_steps, 25,
            "{name}: 200 sentences, batches of 8, 1 epoch"
        );
    }
    // The penalty holds the backbone nearer the SST-2 solution, so does progressive unfreezing.
    assert!(
        extra(ewc, "drift_l2") < extra(plain, "drift_l2"),
        "{ewc:?} vs {plain:?}"
    );
    let prog = record(&r, SST2_TO_AGNEWS, "progressive");
    assert!(extra(prog, "drift_l2") < extra(plain, "drift_l2"));
    // convergence of all-at-once vs progressive unfreezing: AG News accuracy before training
    // (the same model for both) and after each epoch, the last point the reported accuracy
    let curve = |st: &str| {
        r.convergence
            .iter()
            .find(|c| c.scenario == SST2_TO_AGNEWS && c.strategy == st)
            .unwrap_or_else(|| panic!("no AG News convergence curve for {st}"))
            .quality
            .clone()
    };
    let (c_plain, c_prog) = (curve("all-at-once"), curve("progressive"));
    for (c, rec) in [(&c_plain, plain), (&c_prog, prog)] {
        assert_eq!(c.len() as u32, rec.epochs.unwrap() + 1, "{c:?}");
        assert_eq!(*c.last().unwrap(), rec.quality, "{c:?}");
    }
    assert_eq!(c_plain[0], c_prog[0], "the same starting model");
    // EWC's cost includes the Fisher.
    assert!(ewc.config.contains_key("fisher_samples"));

    // sst2-merge: merges train nothing and cost a fraction of a training.
    let base = record(&r, SST2_MERGE, "finetune");
    assert_eq!(
        base.training, full.training,
        "the first model is the full fine-tuning"
    );
    for name in ["linear", "slerp", "task-arithmetic", "ties", "dare-ties"] {
        let x = record(&r, SST2_MERGE, name);
        assert_eq!((x.trainable_params, x.gradient_steps), (0, 0));
        assert!(x.training.co2_kg < base.training.co2_kg, "{name}");
        let cos = extra(x, "task_vector_cosine");
        assert!((-1.0..=1.0).contains(&cos) && cos > 0.0, "{cos}");
        assert_eq!(extra(x, "tensors_taken"), 0.0);
    }
    let multi = record(&r, SST2_MERGE, "multitask-ties");
    assert!((0.0..=1.0).contains(&extra(multi, "agnews_acc")));
    assert!((0.0..=1.0).contains(&extra(multi, "agnews_alone")));
    // The 2- and 4-class heads cannot be merged: taken from the SST-2 model, and reported.
    assert_eq!(extra(multi, "tensors_taken"), 2.0);

    // sst2-lora-soup: the adapters of sst2-full-vs-lora are reused.
    let r4 = record(&r, SST2_LORA_SOUP, "lora-r4");
    assert_eq!(
        r4.training,
        record(&r, SST2_FULL_VS_LORA, "lora-r4").training
    );
    assert_eq!(r4.quality, record(&r, SST2_FULL_VS_LORA, "lora-r4").quality);
    let soup = record(&r, SST2_LORA_SOUP, "soup");
    let soup_r4 = record(&r, SST2_LORA_SOUP, "soup-r4");
    assert!(
        extra(soup, "storage_bytes") > extra(r4, "storage_bytes"),
        "rank 12 > rank 4"
    );
    let err = extra(soup_r4, "compression_error");
    assert!(err > 0.0 && err < 1.0, "{err}");
    let flow = record(&r, SST2_LORA_SOUP, "lora-flow");
    let w = extra(flow, "flow_weight_r8");
    assert!(w > 0.0 && w < 1.0, "{w}");
    assert!(flow.trainable_params > 0 && flow.gradient_steps > 0);
    // Fewer optimizer steps than the adapter's own training (32 sentences x 5 epochs in batches
    // of 8 vs 200 sentences in batches of 8); energy is not compared, it is timing noise here.
    assert!(
        flow.gradient_steps < r4.gradient_steps,
        "{} vs {}",
        flow.gradient_steps,
        r4.gradient_steps
    );

    // cka-layers: one CKA per hidden state, the fine-tuned models reused.
    let cka = record(&r, CKA_LAYERS, "pretrained-vs-sst2");
    let layers: Vec<f64> = (0..)
        .map_while(|i| cka.extra_metrics.get(&format!("cka_layer_{i}")).copied())
        .collect();
    assert!(layers.len() >= 2, "{:?}", cka.extra_metrics);
    assert!(
        layers.iter().all(|v| (0.0..=1.0 + 1e-9).contains(v)),
        "{layers:?}"
    );
    assert!((cka.quality - layers[layers.len() - 1]).abs() < 1e-12);
    let src = r
        .source_costs
        .iter()
        .find(|s| s.scenario == CKA_LAYERS)
        .expect("cka source cost");
    assert!(
        src.training.co2_kg > full.training.co2_kg,
        "SST-2 + AG News trainings"
    );
    for name in ["pretrained-vs-agnews", "sst2-vs-agnews"] {
        assert!((0.0..=1.0).contains(&record(&r, CKA_LAYERS, name).quality));
    }

    // dl-gate: every candidate ranked, trained anyway, and the gate record names its subject.
    let mut ranks: Vec<u64> = ["from-pretrained", "from-sst2", "from-random-init"]
        .iter()
        .map(|n| extra(record(&r, DL_GATE, n), "gate_rank") as u64)
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks, [1, 2, 3]);
    let refused = record(&r, DL_GATE, "from-random-init");
    assert_eq!(refused.kind, StrategyKind::Baseline);
    assert!(extra(refused, "gate_co2_kg") > 0.0);
    let pre = record(&r, DL_GATE, "from-pretrained");
    // The AG News model of sst2-merge reused: the cka-layers source cost is SST-2 + that model.
    let cka_src = r
        .source_costs
        .iter()
        .find(|s| s.scenario == CKA_LAYERS)
        .unwrap()
        .training
        .co2_kg;
    assert!(
        (pre.training.co2_kg + full.training.co2_kg - cka_src).abs() <= 1e-12 * cka_src.max(1e-12),
        "{} + {} vs {cka_src}",
        pre.training.co2_kg,
        full.training.co2_kg
    );
    // from-sst2 is sst2-to-agnews's all-at-once training, reused: the same measurement and model
    let from_sst2 = record(&r, DL_GATE, "from-sst2");
    assert_eq!(from_sst2.training, plain.training);
    assert_eq!(from_sst2.quality, plain.quality);
    assert_eq!(from_sst2.gradient_steps, plain.gradient_steps);
    let g = r
        .gate
        .iter()
        .find(|g| g.scenario == DL_GATE)
        .expect("gate record");
    assert!(g.subject.contains("random-init"), "{}", g.subject);
    assert!(!g.statistics.is_empty());
    assert!(g.transfer_hurt.is_some());
}
