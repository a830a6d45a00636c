//! DistilBERT (Sanh et al. 2019) with Hugging Face weight names and semantics.

use crate::config::{Activation, DistilBertConfig};
use crate::layers::{
    activate, additive_mask, check_inputs, dropout, self_attention, Embedding, LayerNorm, Source,
};
use crate::{Result, SequenceClassifier, TextEncoder};
use candle_core::{Device, Tensor};
use forge_lora::{LoraLinear, LoraModel, ModuleMut};

/// One transformer block: post-norm self-attention and GELU feed-forward.
#[derive(Clone, Debug)]
pub struct DistilBertBlock {
    /// Query projection.
    pub q_lin: LoraLinear,
    /// Key projection.
    pub k_lin: LoraLinear,
    /// Value projection.
    pub v_lin: LoraLinear,
    /// Attention output projection.
    pub out_lin: LoraLinear,
    /// Norm after attention.
    pub sa_layer_norm: LayerNorm,
    /// Feed-forward expansion.
    pub lin1: LoraLinear,
    /// Feed-forward contraction.
    pub lin2: LoraLinear,
    /// Norm after the feed-forward block.
    pub output_layer_norm: LayerNorm,
}

/// The DistilBERT encoder (`DistilBertModel`).
///
/// Module paths are Hugging Face's, under `prefix` (`"distilbert."` inside a classifier, `""` alone):
/// `embeddings.{word_embeddings,position_embeddings,LayerNorm}`,
/// `transformer.layer.{i}.attention.{q_lin,k_lin,v_lin,out_lin}`, `...sa_layer_norm`,
/// `...ffn.{lin1,lin2}`, `...output_layer_norm`.
#[derive(Clone, Debug)]
pub struct DistilBertModel {
    /// The config.
    pub config: DistilBertConfig,
    prefix: String,
    /// Token embeddings.
    pub word_embeddings: Embedding,
    /// Learned position embeddings.
    pub position_embeddings: Embedding,
    /// Embedding norm.
    pub embeddings_norm: LayerNorm,
    /// Transformer blocks.
    pub layers: Vec<DistilBertBlock>,
    training: bool,
}

const EPS: f64 = 1e-12;

impl DistilBertModel {
    pub(crate) fn build(
        config: &DistilBertConfig,
        prefix: &str,
        src: &mut Source<'_>,
    ) -> Result<Self> {
        config.validate()?;
        let c = config;
        // checkpoint name candidates: with the model prefix, or without it (a bare DistilBertModel)
        let n = |rest: &str| -> Vec<String> {
            let mut v = vec![format!("{prefix}{rest}")];
            for alt in ["", "distilbert."] {
                let s = format!("{alt}{rest}");
                if !v.contains(&s) {
                    v.push(s);
                }
            }
            v
        };
        let word_embeddings = src.embedding(
            &n("embeddings.word_embeddings"),
            c.vocab_size,
            c.dim,
            c.pad_token_id,
        )?;
        let position_embeddings = src.embedding(
            &n("embeddings.position_embeddings"),
            c.max_position_embeddings,
            c.dim,
            None,
        )?;
        let embeddings_norm = src.norm(&n("embeddings.LayerNorm"), c.dim, EPS)?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let l = |rest: &str| n(&format!("transformer.layer.{i}.{rest}"));
            layers.push(DistilBertBlock {
                q_lin: src.linear(&l("attention.q_lin"), c.dim, c.dim, true)?,
                k_lin: src.linear(&l("attention.k_lin"), c.dim, c.dim, true)?,
                v_lin: src.linear(&l("attention.v_lin"), c.dim, c.dim, true)?,
                out_lin: src.linear(&l("attention.out_lin"), c.dim, c.dim, true)?,
                sa_layer_norm: src.norm(&l("sa_layer_norm"), c.dim, EPS)?,
                lin1: src.linear(&l("ffn.lin1"), c.dim, c.hidden_dim, true)?,
                lin2: src.linear(&l("ffn.lin2"), c.hidden_dim, c.dim, true)?,
                output_layer_norm: src.norm(&l("output_layer_norm"), c.dim, EPS)?,
            });
        }
        Ok(Self {
            config: c.clone(),
            prefix: prefix.to_string(),
            word_embeddings,
            position_embeddings,
            embeddings_norm,
            layers,
            training: false,
        })
    }

    /// A randomly initialised encoder (Hugging Face's init, seeded).
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] for an invalid config.
    pub fn new_random(config: &DistilBertConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut src = Source {
            weights: None,
            rng: forge_linalg::seeded_rng(seed),
            std: config.initializer_range,
            device: device.clone(),
        };
        Self::build(config, "", &mut src)
    }

    /// Last hidden states.
    ///
    /// # Shapes
    /// ids `[b, s]` (integer), mask `[b, s]` (1 = token, 0 = padding) -> `[b, s, dim]`.
    ///
    /// # Errors
    /// [`crate::ModelError::InvalidInput`] for bad ids or mask.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let c = &self.config;
        let (ids, mask) = check_inputs(
            input_ids,
            attention_mask,
            c.vocab_size,
            c.max_position_embeddings,
        )?;
        let (_, s) = ids.dims2()?;
        let train = self.training;
        let act = Activation::parse("activation", &c.activation)?;
        let pos = Tensor::arange(0u32, s as u32, ids.device())?.unsqueeze(0)?;
        let x = self
            .word_embeddings
            .forward(&ids)?
            .broadcast_add(&self.position_embeddings.forward(&pos)?)?;
        let mut x = dropout(&self.embeddings_norm.forward(&x)?, c.dropout, train)?;
        let mask = additive_mask(&mask)?;
        for l in &self.layers {
            let ctx = self_attention(
                &l.q_lin,
                &l.k_lin,
                &l.v_lin,
                &x,
                &mask,
                c.n_heads,
                c.attention_dropout,
                train,
            )?;
            let sa = l.out_lin.forward_t(&ctx, train)?;
            let sa = l.sa_layer_norm.forward(&(sa + &x)?)?;
            let h = activate(&l.lin1.forward_t(&sa, train)?, act)?;
            let h = dropout(&l.lin2.forward_t(&h, train)?, c.dropout, train)?;
            x = l.output_layer_norm.forward(&(h + sa)?)?;
        }
        Ok(x)
    }

    /// Dropout on (training) or off (evaluation), adapters included.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
        forge_lora::set_lora_training(self, training);
    }

    /// Whether dropout is active.
    pub fn is_training(&self) -> bool {
        self.training
    }

    pub(crate) fn push_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let p = self.prefix.clone();
        out.push((
            format!("{p}embeddings.word_embeddings"),
            ModuleMut::Params(vec![("weight", &mut self.word_embeddings.weight)]),
        ));
        out.push((
            format!("{p}embeddings.position_embeddings"),
            ModuleMut::Params(vec![("weight", &mut self.position_embeddings.weight)]),
        ));
        out.push((
            format!("{p}embeddings.LayerNorm"),
            ModuleMut::Params(self.embeddings_norm.params_mut()),
        ));
        for (i, l) in self.layers.iter_mut().enumerate() {
            let b = format!("{p}transformer.layer.{i}.");
            out.push((
                format!("{b}attention.q_lin"),
                ModuleMut::Linear(&mut l.q_lin),
            ));
            out.push((
                format!("{b}attention.k_lin"),
                ModuleMut::Linear(&mut l.k_lin),
            ));
            out.push((
                format!("{b}attention.v_lin"),
                ModuleMut::Linear(&mut l.v_lin),
            ));
            out.push((
                format!("{b}attention.out_lin"),
                ModuleMut::Linear(&mut l.out_lin),
            ));
            out.push((
                format!("{b}sa_layer_norm"),
                ModuleMut::Params(l.sa_layer_norm.params_mut()),
            ));
            out.push((format!("{b}ffn.lin1"), ModuleMut::Linear(&mut l.lin1)));
            out.push((format!("{b}ffn.lin2"), ModuleMut::Linear(&mut l.lin2)));
            out.push((
                format!("{b}output_layer_norm"),
                ModuleMut::Params(l.output_layer_norm.params_mut()),
            ));
        }
    }
}

impl LoraModel for DistilBertModel {
    fn architecture(&self) -> String {
        "distilbert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.push_modules(&mut v);
        v
    }
}

impl TextEncoder for DistilBertModel {
    fn encode(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward(input_ids, attention_mask)
    }
    fn hidden_size(&self) -> usize {
        self.config.dim
    }
}

/// `DistilBertForSequenceClassification`: first-token hidden state -> `pre_classifier` -> ReLU ->
/// dropout(`seq_classif_dropout`) -> `classifier`.
#[derive(Clone, Debug)]
pub struct DistilBertForSequenceClassification {
    /// The encoder (paths under `distilbert.`).
    pub distilbert: DistilBertModel,
    /// Dense layer on the first token.
    pub pre_classifier: LoraLinear,
    /// Output layer `[num_labels, dim]`.
    pub classifier: LoraLinear,
    training: bool,
}

impl DistilBertForSequenceClassification {
    pub(crate) fn build(config: &DistilBertConfig, src: &mut Source<'_>) -> Result<Self> {
        let distilbert = DistilBertModel::build(config, "distilbert.", src)?;
        let d = config.dim;
        let pre_classifier = src.linear(&["pre_classifier".to_string()], d, d, false)?;
        let classifier = src.linear(&["classifier".to_string()], d, config.num_labels(), false)?;
        Ok(Self {
            distilbert,
            pre_classifier,
            classifier,
            training: false,
        })
    }

    /// A randomly initialised model (Hugging Face's init, seeded); no weights needed, e.g. to
    /// count parameters or benchmark.
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] for an invalid config.
    pub fn new_random(config: &DistilBertConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut src = Source {
            weights: None,
            rng: forge_linalg::seeded_rng(seed),
            std: config.initializer_range,
            device: device.clone(),
        };
        Self::build(config, &mut src)
    }

    /// Load from a checkpoint; a missing head (`pre_classifier`, `classifier`) is newly
    /// initialised with `seed`, as Hugging Face does.
    ///
    /// # Errors
    /// [`crate::ModelError::MissingTensor`] / [`crate::ModelError::ShapeMismatch`] naming the tensor.
    pub fn from_weights(
        config: &DistilBertConfig,
        weights: &crate::Weights,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut src = Source {
            weights: Some(weights),
            rng: forge_linalg::seeded_rng(seed),
            std: config.initializer_range,
            device: device.clone(),
        };
        Self::build(config, &mut src)
    }
}

impl LoraModel for DistilBertForSequenceClassification {
    fn architecture(&self) -> String {
        "distilbert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.distilbert.push_modules(&mut v);
        v.push((
            "pre_classifier".into(),
            ModuleMut::Linear(&mut self.pre_classifier),
        ));
        v.push(("classifier".into(), ModuleMut::Linear(&mut self.classifier)));
        v
    }
}

impl SequenceClassifier for DistilBertForSequenceClassification {
    fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.distilbert.forward(input_ids, attention_mask)?;
        let first = h.narrow(1, 0, 1)?.squeeze(1)?;
        let x = self
            .pre_classifier
            .forward_t(&first, self.training)?
            .relu()?;
        let x = dropout(
            &x,
            self.distilbert.config.seq_classif_dropout,
            self.training,
        )?;
        Ok(self.classifier.forward_t(&x, self.training)?)
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.distilbert.training = training;
        forge_lora::set_lora_training(self, training);
    }
    fn is_training(&self) -> bool {
        self.training
    }
    fn num_labels(&self) -> usize {
        self.classifier.out_features()
    }
    fn encoder(&self) -> &dyn TextEncoder {
        &self.distilbert
    }
}
