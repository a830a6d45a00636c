//! Make a user-defined candle MLP LoRA-adaptable, fine-tune only the adapters with LoRA+
//! learning rates on a shifted task, merge, and save the adapter in PEFT's format.
//!
//! `cargo run -p forge-lora --example custom_mlp`

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use forge_lora::{
    count_parameters, load_adapter, lora_plus_groups, merge_all, save_adapter, LoraConfig,
    LoraInjector, LoraLinear, LoraModel, ModuleMut,
};

/// Any candle model: it only has to list its linear layers by name.
struct Mlp {
    fc1: LoraLinear,
    fc2: LoraLinear,
    head: LoraLinear,
}

impl Mlp {
    fn new(seed: u64, dev: &Device) -> forge_lora::Result<Self> {
        let mut rng = forge_linalg::seeded_rng(seed);
        Ok(Self {
            fc1: LoraLinear::new_random(8, 32, true, 0.3, dev, &mut rng)?,
            fc2: LoraLinear::new_random(32, 32, true, 0.3, dev, &mut rng)?,
            head: LoraLinear::new_random(32, 1, true, 0.3, dev, &mut rng)?,
        })
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.fc1.forward(x)?.relu()?;
        let h = self.fc2.forward(&h)?.relu()?;
        self.head.forward(&h)
    }
}

impl LoraModel for Mlp {
    fn architecture(&self) -> String {
        "mlp".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        vec![
            ("encoder.fc1".into(), ModuleMut::Linear(&mut self.fc1)),
            ("encoder.fc2".into(), ModuleMut::Linear(&mut self.fc2)),
            ("head".into(), ModuleMut::Linear(&mut self.head)),
        ]
    }
}

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let mut rng = forge_linalg::seeded_rng(7);
    let x = forge_linalg::rng::randn(&[256, 8], DType::F32, &dev, &mut rng)?;
    // target task: a fixed random teacher network (what the "pre-trained" base does not know)
    let teacher = Mlp::new(99, &dev)?;
    let y = teacher.forward(&x)?.detach();

    let mut model = Mlp::new(1, &dev)?;
    let config = LoraConfig::new(4, 8.0, &["fc1", "fc2"]).with_modules_to_save(&["head"]);
    let inj = LoraInjector::new(config.clone())?
        .with_seed(3)
        .inject(&mut model)?;
    let counts = count_parameters(&mut model);
    println!(
        "adapted {:?}; trainable {} of {} parameters",
        inj.adapted, counts.trainable, counts.total
    );

    // LoRA+: B matrices learn 16x faster than A (one optimizer per group)
    let groups = lora_plus_groups(&mut model, 3e-3, 16.0)?;
    let mut opts: Vec<AdamW> = groups
        .iter()
        .map(|g| {
            AdamW::new(
                g.vars.clone(),
                ParamsAdamW {
                    lr: g.lr,
                    weight_decay: 0.0,
                    ..Default::default()
                },
            )
        })
        .collect::<candle_core::Result<_>>()?;
    let mse = |m: &Mlp| -> candle_core::Result<Tensor> { (m.forward(&x)? - &y)?.sqr()?.mean_all() };
    println!("initial mse {:.4}", mse(&model)?.to_scalar::<f32>()?);
    for step in 0..200 {
        let loss = mse(&model)?;
        let grads = loss.backward()?;
        for o in opts.iter_mut() {
            o.step(&grads)?;
        }
        if step % 50 == 0 {
            println!("step {step:3}  mse {:.4}", loss.to_scalar::<f32>()?);
        }
    }
    let before_merge = model.forward(&x)?;
    println!("final mse {:.4}", mse(&model)?.to_scalar::<f32>()?);
    merge_all(&mut model)?;
    let diff = (model.forward(&x)? - &before_merge)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    println!("merged vs unmerged max |diff| = {diff:.2e}");

    let dir = std::env::temp_dir().join("forge-lora-custom-mlp");
    save_adapter(&mut model, &config, &dir)?;
    let mut fresh = Mlp::new(1, &dev)?;
    load_adapter(&mut fresh, &dir)?;
    let diff = (fresh.forward(&x)? - &before_merge)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    println!(
        "adapter saved to {} and reloaded: max |diff| = {diff:.2e}",
        dir.display()
    );
    Ok(())
}
