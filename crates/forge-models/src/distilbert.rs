//! DistilBERT (Sanh et al. 2019) with Hugging Face weight names and semantics.

use crate::builder::{Named, ParamBuilder, VisitModules};
use crate::config::{Activation, DistilBertConfig};
use crate::layers::last_state;
use crate::layers::{
    activate, additive_mask, attend, check_inputs, dropout, Embedding, LayerNorm, TokenRows,
};
use crate::{Result, SequenceClassifier, TextEncoder, Weights};
use candle_core::{Device, Tensor};
use forge_lora::{DeepClone, LoraLinear, LoraModel, ModuleMut};

/// One transformer block: post-norm self-attention and GELU feed-forward.
#[derive(Debug)]
pub struct DistilBertBlock {
    /// Query projection (`attention.q_lin`).
    pub q_lin: Named<LoraLinear>,
    /// Key projection (`attention.k_lin`).
    pub k_lin: Named<LoraLinear>,
    /// Value projection (`attention.v_lin`).
    pub v_lin: Named<LoraLinear>,
    /// Attention output projection (`attention.out_lin`).
    pub out_lin: Named<LoraLinear>,
    /// Norm after attention (`sa_layer_norm`).
    pub sa_layer_norm: Named<LayerNorm>,
    /// Feed-forward expansion (`ffn.lin1`).
    pub lin1: Named<LoraLinear>,
    /// Feed-forward contraction (`ffn.lin2`).
    pub lin2: Named<LoraLinear>,
    /// Norm after the feed-forward block (`output_layer_norm`).
    pub output_layer_norm: Named<LayerNorm>,
}

impl DistilBertBlock {
    /// Build block `transformer.layer.{i}` under `vb` (that path already applied).
    fn build(c: &DistilBertConfig, vb: &ParamBuilder<'_>) -> Result<Self> {
        let (d, h) = (c.dim, c.hidden_dim);
        let att = vb.pp("attention");
        Ok(Self {
            q_lin: att.pp("q_lin").linear(d, d)?,
            k_lin: att.pp("k_lin").linear(d, d)?,
            v_lin: att.pp("v_lin").linear(d, d)?,
            out_lin: att.pp("out_lin").linear(d, d)?,
            sa_layer_norm: vb.pp("sa_layer_norm").layer_norm(d, EPS)?,
            lin1: vb.pp("ffn").pp("lin1").linear(d, h)?,
            lin2: vb.pp("ffn").pp("lin2").linear(h, d)?,
            output_layer_norm: vb.pp("output_layer_norm").layer_norm(d, EPS)?,
        })
    }
}

impl VisitModules for DistilBertBlock {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let Self {
            q_lin,
            k_lin,
            v_lin,
            out_lin,
            sa_layer_norm,
            lin1,
            lin2,
            output_layer_norm,
        } = self;
        q_lin.visit_modules(out);
        k_lin.visit_modules(out);
        v_lin.visit_modules(out);
        out_lin.visit_modules(out);
        sa_layer_norm.visit_modules(out);
        lin1.visit_modules(out);
        lin2.visit_modules(out);
        output_layer_norm.visit_modules(out);
    }
}

impl DeepClone for DistilBertBlock {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            q_lin: self.q_lin.try_clone_deep()?,
            k_lin: self.k_lin.try_clone_deep()?,
            v_lin: self.v_lin.try_clone_deep()?,
            out_lin: self.out_lin.try_clone_deep()?,
            sa_layer_norm: self.sa_layer_norm.try_clone_deep()?,
            lin1: self.lin1.try_clone_deep()?,
            lin2: self.lin2.try_clone_deep()?,
            output_layer_norm: self.output_layer_norm.try_clone_deep()?,
        })
    }
}

/// The DistilBERT encoder (`DistilBertModel`).
///
/// Module paths are Hugging Face's, under the builder's path (`distilbert` inside a classifier, the root alone):
/// `embeddings.{word_embeddings,position_embeddings,LayerNorm}`,
/// `transformer.layer.{i}.attention.{q_lin,k_lin,v_lin,out_lin}`, `...sa_layer_norm`,
/// `...ffn.{lin1,lin2}`, `...output_layer_norm`.
///
/// Not `Clone` (a clone would share parameter storage): [`DeepClone::try_clone_deep`] makes an
/// independent copy.
#[derive(Debug)]
pub struct DistilBertModel {
    /// The config.
    pub config: DistilBertConfig,
    /// Token embeddings.
    pub word_embeddings: Named<Embedding>,
    /// Learned position embeddings.
    pub position_embeddings: Named<Embedding>,
    /// Embedding norm.
    pub embeddings_norm: Named<LayerNorm>,
    /// Transformer blocks.
    pub layers: Vec<DistilBertBlock>,
    training: bool,
}

/// Where DistilBERT's own tensors live in a checkpoint (after the `distilbert.` prefix): an
/// unused tensor under these is an error, not a warning.
const ROOTS: &[&str] = &["embeddings.", "transformer."];

const EPS: f64 = 1e-12;

impl DistilBertModel {
    /// Build under `vb` (the `distilbert` path inside a classifier, the root alone).
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] for an invalid config; loading errors naming the tensor.
    pub fn build(config: &DistilBertConfig, vb: &ParamBuilder<'_>) -> Result<Self> {
        config.validate()?;
        let c = config;
        let emb = vb.pp("embeddings");
        let word_embeddings =
            emb.pp("word_embeddings")
                .embedding(c.vocab_size, c.dim, c.pad_token_id)?;
        let position_embeddings =
            emb.pp("position_embeddings")
                .embedding(c.max_position_embeddings, c.dim, None)?;
        let embeddings_norm = emb.pp("LayerNorm").layer_norm(c.dim, EPS)?;
        let layers = (0..c.n_layers)
            .map(|i| DistilBertBlock::build(c, &vb.pp("transformer").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: c.clone(),
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
        Self::build(
            config,
            &ParamBuilder::random(seed, config.initializer_range, device),
        )
    }

    /// Load a bare encoder; checkpoint names with or without the `distilbert.` prefix are
    /// accepted, a classification head in the checkpoint is ignored.
    ///
    /// # Errors
    /// [`crate::ModelError::MissingTensor`] / [`crate::ModelError::ShapeMismatch`] /
    /// [`crate::ModelError::BadDType`] / [`crate::ModelError::NonFinite`] naming the tensor;
    /// [`crate::ModelError::UnexpectedTensors`] when the checkpoint has encoder tensors the config
    /// has no place for (e.g. more layers).
    pub fn from_weights(
        config: &DistilBertConfig,
        weights: &Weights,
        device: &Device,
    ) -> Result<Self> {
        let vb = ParamBuilder::from_weights(weights, 0, config.initializer_range, device)
            .with_checkpoint_prefix("distilbert");
        let m = Self::build(config, &vb)?;
        vb.finish(ROOTS)?;
        Ok(m)
    }

    /// Last hidden states.
    ///
    /// # Shapes
    /// ids `[b, s]` (integer), mask `[b, s]` (1 = token, 0 = padding) -> `[b, s, dim]`.
    ///
    /// # Errors
    /// [`crate::ModelError::InvalidInput`] for bad ids or mask.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        last_state(self.run(input_ids, attention_mask, false)?)
    }

    /// Every hidden state, as Hugging Face's `output_hidden_states=True`: index 0 is the
    /// embedding output (after the embedding layer norm), index `i` the output of block `i`;
    /// the last equals [`Self::forward`].
    ///
    /// # Shapes
    /// ids `[b, s]`, mask `[b, s]` -> `n_layers + 1` tensors `[b, s, dim]`.
    ///
    /// # Errors
    /// [`crate::ModelError::InvalidInput`] for bad ids or mask.
    pub fn all_hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        self.run(input_ids, attention_mask, true)
    }

    /// The forward pass; keeps every hidden state when `keep_all`, else only the last.
    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        keep_all: bool,
    ) -> Result<Vec<Tensor>> {
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
        // one row per real token from here on (see `TokenRows`)
        let tokens = TokenRows::from_mask(&mask)?;
        let mask = additive_mask(&mask)?;
        x = tokens.rows(&x)?;
        let mut states = Vec::with_capacity(if keep_all { self.layers.len() + 1 } else { 1 });
        for l in &self.layers {
            if keep_all {
                states.push(tokens.batch(&x)?);
            }
            let ctx = attend(
                &l.q_lin,
                &l.k_lin,
                &l.v_lin,
                &x,
                &tokens,
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
        states.push(tokens.batch(&x)?);
        Ok(states)
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
}

impl VisitModules for DistilBertModel {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let Self {
            config: _,
            word_embeddings,
            position_embeddings,
            embeddings_norm,
            layers,
            training: _,
        } = self;
        word_embeddings.visit_modules(out);
        position_embeddings.visit_modules(out);
        embeddings_norm.visit_modules(out);
        layers.visit_modules(out);
    }
}

impl DeepClone for DistilBertModel {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            config: self.config.clone(),
            word_embeddings: self.word_embeddings.try_clone_deep()?,
            position_embeddings: self.position_embeddings.try_clone_deep()?,
            embeddings_norm: self.embeddings_norm.try_clone_deep()?,
            layers: self.layers.try_clone_deep()?,
            training: self.training,
        })
    }
}

impl LoraModel for DistilBertModel {
    fn architecture(&self) -> String {
        "distilbert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.visit_modules(&mut v);
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
///
/// Not `Clone` (a clone would share parameter storage): [`DeepClone::try_clone_deep`] makes an
/// independent copy.
#[derive(Debug)]
pub struct DistilBertForSequenceClassification {
    /// The encoder (paths under `distilbert.`).
    pub distilbert: DistilBertModel,
    /// Dense layer on the first token (`pre_classifier`).
    pub pre_classifier: Named<LoraLinear>,
    /// Output layer `[num_labels, dim]` (`classifier`).
    pub classifier: Named<LoraLinear>,
    training: bool,
}

impl DistilBertForSequenceClassification {
    /// Build under the root of `vb`; the head (`pre_classifier`, `classifier`) is optional in a
    /// checkpoint.
    ///
    /// # Errors
    /// As [`DistilBertModel::build`].
    pub fn build(config: &DistilBertConfig, vb: &ParamBuilder<'_>) -> Result<Self> {
        let distilbert = DistilBertModel::build(config, &vb.pp("distilbert"))?;
        let d = config.dim;
        let head = vb.optional();
        Ok(Self {
            distilbert,
            pre_classifier: head.pp("pre_classifier").linear(d, d)?,
            classifier: head.pp("classifier").linear(d, config.num_labels())?,
            training: false,
        })
    }

    /// A randomly initialised model (Hugging Face's init, seeded); no weights needed, e.g. to
    /// count parameters or benchmark.
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] for an invalid config.
    pub fn new_random(config: &DistilBertConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(
            config,
            &ParamBuilder::random(seed, config.initializer_range, device),
        )
    }

    /// Load from a checkpoint; a missing head (`pre_classifier`, `classifier`) is newly
    /// initialised with `seed`, as Hugging Face does. Encoder names with or without the
    /// `distilbert.` prefix are accepted.
    ///
    /// # Errors
    /// As [`DistilBertModel::from_weights`].
    pub fn from_weights(
        config: &DistilBertConfig,
        weights: &Weights,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let vb = ParamBuilder::from_weights(weights, seed, config.initializer_range, device)
            .with_checkpoint_prefix("distilbert");
        let m = Self::build(config, &vb)?;
        vb.finish(ROOTS)?;
        Ok(m)
    }
}

impl VisitModules for DistilBertForSequenceClassification {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let Self {
            distilbert,
            pre_classifier,
            classifier,
            training: _,
        } = self;
        distilbert.visit_modules(out);
        pre_classifier.visit_modules(out);
        classifier.visit_modules(out);
    }
}

impl DeepClone for DistilBertForSequenceClassification {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            distilbert: self.distilbert.try_clone_deep()?,
            pre_classifier: self.pre_classifier.try_clone_deep()?,
            classifier: self.classifier.try_clone_deep()?,
            training: self.training,
        })
    }
}

impl LoraModel for DistilBertForSequenceClassification {
    fn architecture(&self) -> String {
        "distilbert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.visit_modules(&mut v);
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

impl crate::SavePretrained for DistilBertModel {
    fn hf_config(&self) -> Result<serde_json::Value> {
        crate::checkpoint::hf_config_json(&self.config, "distilbert", "DistilBertModel", None)
    }
}

impl crate::SavePretrained for DistilBertForSequenceClassification {
    fn hf_config(&self) -> Result<serde_json::Value> {
        crate::checkpoint::hf_config_json(
            &self.distilbert.config,
            "distilbert",
            "DistilBertForSequenceClassification",
            Some(self.num_labels()),
        )
    }
}
