//! BERT (Devlin et al. 2019) with Hugging Face weight names and semantics; also MiniLM
//! checkpoints (e.g. sentence-transformers/all-MiniLM-L6-v2).

use crate::builder::{Named, ParamBuilder, VisitModules};
use crate::config::{Activation, BertConfig};
use crate::layers::last_state;
use crate::layers::{
    activate, additive_mask, attend, check_inputs, dropout, Embedding, LayerNorm, TokenRows,
};
use crate::{ModelError, Result, SequenceClassifier, TextEncoder, Weights};
use candle_core::{DType, Device, Tensor};
use forge_lora::{DeepClone, LoraLinear, LoraModel, ModuleMut};

/// One BERT block: self-attention (`attention.self.{query,key,value}`), `attention.output`
/// (dense + LayerNorm), `intermediate.dense` + activation, `output` (dense + LayerNorm).
#[derive(Debug)]
pub struct BertBlock {
    /// Query projection (`attention.self.query`).
    pub query: Named<LoraLinear>,
    /// Key projection (`attention.self.key`).
    pub key: Named<LoraLinear>,
    /// Value projection (`attention.self.value`).
    pub value: Named<LoraLinear>,
    /// Attention output projection (`attention.output.dense`).
    pub attention_output: Named<LoraLinear>,
    /// Norm after attention (`attention.output.LayerNorm`).
    pub attention_norm: Named<LayerNorm>,
    /// Feed-forward expansion (`intermediate.dense`).
    pub intermediate: Named<LoraLinear>,
    /// Feed-forward contraction (`output.dense`).
    pub output: Named<LoraLinear>,
    /// Norm after the feed-forward block (`output.LayerNorm`).
    pub output_norm: Named<LayerNorm>,
}

impl BertBlock {
    /// Build block `encoder.layer.{i}` under `vb` (that path already applied).
    fn build(c: &BertConfig, vb: &ParamBuilder<'_>) -> Result<Self> {
        let (h, eps) = (c.hidden_size, c.layer_norm_eps);
        let att = vb.pp("attention");
        let (sa, ao) = (att.pp("self"), att.pp("output"));
        Ok(Self {
            query: sa.pp("query").linear(h, h)?,
            key: sa.pp("key").linear(h, h)?,
            value: sa.pp("value").linear(h, h)?,
            attention_output: ao.pp("dense").linear(h, h)?,
            attention_norm: ao.pp("LayerNorm").layer_norm(h, eps)?,
            intermediate: vb
                .pp("intermediate")
                .pp("dense")
                .linear(h, c.intermediate_size)?,
            output: vb.pp("output").pp("dense").linear(c.intermediate_size, h)?,
            output_norm: vb.pp("output").pp("LayerNorm").layer_norm(h, eps)?,
        })
    }
}

impl VisitModules for BertBlock {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let Self {
            query,
            key,
            value,
            attention_output,
            attention_norm,
            intermediate,
            output,
            output_norm,
        } = self;
        query.visit_modules(out);
        key.visit_modules(out);
        value.visit_modules(out);
        attention_output.visit_modules(out);
        attention_norm.visit_modules(out);
        intermediate.visit_modules(out);
        output.visit_modules(out);
        output_norm.visit_modules(out);
    }
}

impl DeepClone for BertBlock {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            query: self.query.try_clone_deep()?,
            key: self.key.try_clone_deep()?,
            value: self.value.try_clone_deep()?,
            attention_output: self.attention_output.try_clone_deep()?,
            attention_norm: self.attention_norm.try_clone_deep()?,
            intermediate: self.intermediate.try_clone_deep()?,
            output: self.output.try_clone_deep()?,
            output_norm: self.output_norm.try_clone_deep()?,
        })
    }
}

/// The BERT encoder (`BertModel`), optionally with its pooler (`tanh(dense(h_[CLS]))`).
///
/// Not `Clone` (a clone would share parameter storage): [`DeepClone::try_clone_deep`] makes an
/// independent copy.
#[derive(Debug)]
pub struct BertModel {
    /// The config.
    pub config: BertConfig,
    /// Token embeddings.
    pub word_embeddings: Named<Embedding>,
    /// Position embeddings.
    pub position_embeddings: Named<Embedding>,
    /// Segment embeddings.
    pub token_type_embeddings: Named<Embedding>,
    /// Embedding norm.
    pub embeddings_norm: Named<LayerNorm>,
    /// Transformer blocks.
    pub layers: Vec<BertBlock>,
    /// The pooler dense layer (`pooler.dense`), when present.
    pub pooler: Option<Named<LoraLinear>>,
    training: bool,
}

/// Where BERT's own tensors live in a checkpoint (after the `bert.` prefix): an unused tensor
/// under these is an error, not a warning.
const ROOTS: &[&str] = &["embeddings.", "encoder.", "pooler."];

impl BertModel {
    /// Build under `vb` (the `bert` path inside a classifier, the root alone), with the pooler
    /// when `with_pooler` (optional in a checkpoint unless `pooler_required`).
    ///
    /// # Errors
    /// [`ModelError::Config`] for an invalid config; loading errors naming the tensor.
    pub fn build(
        config: &BertConfig,
        vb: &ParamBuilder<'_>,
        with_pooler: bool,
        pooler_required: bool,
    ) -> Result<Self> {
        config.validate()?;
        let c = config;
        let h = c.hidden_size;
        let emb = vb.pp("embeddings");
        let word_embeddings =
            emb.pp("word_embeddings")
                .embedding(c.vocab_size, h, c.pad_token_id)?;
        let position_embeddings =
            emb.pp("position_embeddings")
                .embedding(c.max_position_embeddings, h, None)?;
        let token_type_embeddings =
            emb.pp("token_type_embeddings")
                .embedding(c.type_vocab_size, h, None)?;
        let embeddings_norm = emb.pp("LayerNorm").layer_norm(h, c.layer_norm_eps)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| BertBlock::build(c, &vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let pooler = if with_pooler {
            let p = vb.pp("pooler").pp("dense");
            let p = if pooler_required { p } else { p.optional() };
            Some(p.linear(h, h)?)
        } else {
            None
        };
        Ok(Self {
            config: c.clone(),
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm,
            layers,
            pooler,
            training: false,
        })
    }

    /// A randomly initialised encoder with pooler (Hugging Face's init, seeded).
    ///
    /// # Errors
    /// [`ModelError::Config`] for an invalid config.
    pub fn new_random(config: &BertConfig, seed: u64, device: &Device) -> Result<Self> {
        let vb = ParamBuilder::random(seed, config.initializer_range, device);
        Self::build(config, &vb, true, false)
    }

    /// Load a bare encoder (`BertModel`, e.g. MiniLM; module paths without prefix). Checkpoint
    /// names with or without a `bert.` prefix are accepted; the pooler is loaded when present.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`] / [`ModelError::ShapeMismatch`] / [`ModelError::BadDType`] /
    /// [`ModelError::NonFinite`] naming the tensor; [`ModelError::UnexpectedTensors`] when the
    /// checkpoint has encoder tensors the config has no place for (e.g. more layers).
    pub fn from_weights(config: &BertConfig, weights: &Weights, device: &Device) -> Result<Self> {
        let vb = ParamBuilder::from_weights(weights, 0, config.initializer_range, device)
            .with_checkpoint_prefix("bert");
        let has_pooler = vb.pp("pooler").pp("dense").contains("weight");
        let m = Self::build(config, &vb, has_pooler, true)?;
        vb.finish(ROOTS)?;
        Ok(m)
    }

    /// Last hidden states (token types all 0).
    ///
    /// # Shapes
    /// ids `[b, s]` (integer), mask `[b, s]` (1 = token, 0 = padding) -> `[b, s, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad ids or mask.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward_with_types(input_ids, attention_mask, None)
    }

    /// Last hidden states with explicit token type ids `[b, s]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad ids, mask or token types.
    pub fn forward_with_types(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        last_state(self.run(input_ids, attention_mask, token_type_ids, false)?)
    }

    /// Every hidden state (token types all 0), as Hugging Face's `output_hidden_states=True`:
    /// index 0 is the embedding output (after the embedding layer norm), index `i` the output
    /// of block `i`; the last equals [`Self::forward`].
    ///
    /// # Shapes
    /// ids `[b, s]`, mask `[b, s]` -> `num_hidden_layers + 1` tensors `[b, s, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad ids or mask.
    pub fn all_hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        self.run(input_ids, attention_mask, None, true)
    }

    /// The forward pass; keeps every hidden state when `keep_all`, else only the last.
    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
        keep_all: bool,
    ) -> Result<Vec<Tensor>> {
        let c = &self.config;
        let (ids, mask) = check_inputs(
            input_ids,
            attention_mask,
            c.vocab_size,
            c.max_position_embeddings,
        )?;
        let (b, s) = ids.dims2()?;
        let train = self.training;
        let act = Activation::parse("hidden_act", &c.hidden_act)?;
        let types = match token_type_ids {
            Some(t) => {
                let (t, _) = check_inputs(t, None, c.type_vocab_size, c.max_position_embeddings)?;
                if t.dims() != [b, s] {
                    return Err(ModelError::InvalidInput {
                        what: "token_type_ids",
                        reason: format!("expected shape [{b}, {s}], got {:?}", t.dims()),
                    });
                }
                t
            }
            None => Tensor::zeros((b, s), DType::U32, ids.device())?,
        };
        let pos = Tensor::arange(0u32, s as u32, ids.device())?.unsqueeze(0)?;
        let x = (self.word_embeddings.forward(&ids)?
            + self.token_type_embeddings.forward(&types)?)?
        .broadcast_add(&self.position_embeddings.forward(&pos)?)?;
        let mut x = dropout(
            &self.embeddings_norm.forward(&x)?,
            c.hidden_dropout_prob,
            train,
        )?;
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
                &l.query,
                &l.key,
                &l.value,
                &x,
                &tokens,
                &mask,
                c.num_attention_heads,
                c.attention_probs_dropout_prob,
                train,
            )?;
            let a = dropout(
                &l.attention_output.forward_t(&ctx, train)?,
                c.hidden_dropout_prob,
                train,
            )?;
            let a = l.attention_norm.forward(&(a + &x)?)?;
            let h = activate(&l.intermediate.forward_t(&a, train)?, act)?;
            let h = dropout(
                &l.output.forward_t(&h, train)?,
                c.hidden_dropout_prob,
                train,
            )?;
            x = l.output_norm.forward(&(h + a)?)?;
        }
        states.push(tokens.batch(&x)?);
        Ok(states)
    }

    /// The pooled `[CLS]` representation `tanh(W h_0 + b)`.
    ///
    /// # Shapes
    /// `[b, s, hidden]` -> `[b, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::Config`] when the model has no pooler.
    pub fn pool(&self, hidden: &Tensor) -> Result<Tensor> {
        let pooler = self.pooler.as_ref().ok_or_else(|| ModelError::Config {
            field: "pooler",
            reason: "this checkpoint has no pooler".into(),
        })?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(pooler.forward_t(&first, self.training)?.tanh()?)
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

impl VisitModules for BertModel {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let Self {
            config: _,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm,
            layers,
            pooler,
            training: _,
        } = self;
        word_embeddings.visit_modules(out);
        position_embeddings.visit_modules(out);
        token_type_embeddings.visit_modules(out);
        embeddings_norm.visit_modules(out);
        layers.visit_modules(out);
        pooler.visit_modules(out);
    }
}

impl DeepClone for BertModel {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            config: self.config.clone(),
            word_embeddings: self.word_embeddings.try_clone_deep()?,
            position_embeddings: self.position_embeddings.try_clone_deep()?,
            token_type_embeddings: self.token_type_embeddings.try_clone_deep()?,
            embeddings_norm: self.embeddings_norm.try_clone_deep()?,
            layers: self.layers.try_clone_deep()?,
            pooler: self.pooler.try_clone_deep()?,
            training: self.training,
        })
    }
}

impl LoraModel for BertModel {
    fn architecture(&self) -> String {
        "bert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.visit_modules(&mut v);
        v
    }
}

impl TextEncoder for BertModel {
    fn encode(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward(input_ids, attention_mask)
    }
    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }
}

/// `BertForSequenceClassification`: pooler (`tanh(dense(h_[CLS]))`) -> dropout -> `classifier`.
///
/// Not `Clone` (a clone would share parameter storage): [`DeepClone::try_clone_deep`] makes an
/// independent copy.
#[derive(Debug)]
pub struct BertForSequenceClassification {
    /// The encoder with pooler (paths under `bert.`).
    pub bert: BertModel,
    /// Output layer `[num_labels, hidden]` (`classifier`).
    pub classifier: Named<LoraLinear>,
    training: bool,
}

impl BertForSequenceClassification {
    /// Build under the root of `vb`; pooler and classifier are optional in a checkpoint.
    ///
    /// # Errors
    /// As [`BertModel::build`].
    pub fn build(config: &BertConfig, vb: &ParamBuilder<'_>) -> Result<Self> {
        let bert = BertModel::build(config, &vb.pp("bert"), true, false)?;
        let classifier = vb
            .optional()
            .pp("classifier")
            .linear(config.hidden_size, config.num_labels())?;
        Ok(Self {
            bert,
            classifier,
            training: false,
        })
    }

    /// A randomly initialised model (Hugging Face's init, seeded).
    ///
    /// # Errors
    /// [`ModelError::Config`] for an invalid config.
    pub fn new_random(config: &BertConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(
            config,
            &ParamBuilder::random(seed, config.initializer_range, device),
        )
    }

    /// Load from a checkpoint; a missing pooler or classifier is newly initialised with `seed`.
    ///
    /// # Errors
    /// As [`BertModel::from_weights`].
    pub fn from_weights(
        config: &BertConfig,
        weights: &Weights,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let vb = ParamBuilder::from_weights(weights, seed, config.initializer_range, device)
            .with_checkpoint_prefix("bert");
        let m = Self::build(config, &vb)?;
        vb.finish(ROOTS)?;
        Ok(m)
    }
}

impl VisitModules for BertForSequenceClassification {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        let Self {
            bert,
            classifier,
            training: _,
        } = self;
        bert.visit_modules(out);
        classifier.visit_modules(out);
    }
}

impl DeepClone for BertForSequenceClassification {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            bert: self.bert.try_clone_deep()?,
            classifier: self.classifier.try_clone_deep()?,
            training: self.training,
        })
    }
}

impl LoraModel for BertForSequenceClassification {
    fn architecture(&self) -> String {
        "bert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.visit_modules(&mut v);
        v
    }
}

impl SequenceClassifier for BertForSequenceClassification {
    fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.bert.forward(input_ids, attention_mask)?;
        let pooled = dropout(
            &self.bert.pool(&h)?,
            self.bert.config.classifier_dropout(),
            self.training,
        )?;
        Ok(self.classifier.forward_t(&pooled, self.training)?)
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.bert.training = training;
        forge_lora::set_lora_training(self, training);
    }
    fn is_training(&self) -> bool {
        self.training
    }
    fn num_labels(&self) -> usize {
        self.classifier.out_features()
    }
    fn encoder(&self) -> &dyn TextEncoder {
        &self.bert
    }
}

impl crate::SavePretrained for BertModel {
    fn hf_config(&self) -> Result<serde_json::Value> {
        crate::checkpoint::hf_config_json(&self.config, "bert", "BertModel", None)
    }
}

impl crate::SavePretrained for BertForSequenceClassification {
    fn hf_config(&self) -> Result<serde_json::Value> {
        crate::checkpoint::hf_config_json(
            &self.bert.config,
            "bert",
            "BertForSequenceClassification",
            Some(self.num_labels()),
        )
    }
}
