//! BERT (Devlin et al. 2019) with Hugging Face weight names and semantics; also MiniLM
//! checkpoints (e.g. sentence-transformers/all-MiniLM-L6-v2).

use crate::config::{Activation, BertConfig};
use crate::layers::{
    activate, additive_mask, check_inputs, dropout, self_attention, Embedding, LayerNorm, Source,
};
use crate::{ModelError, Result, SequenceClassifier, TextEncoder};
use candle_core::{DType, Device, Tensor};
use forge_lora::{LoraLinear, LoraModel, ModuleMut};

/// One BERT block: self-attention (`attention.self.{query,key,value}`), `attention.output`
/// (dense + LayerNorm), `intermediate.dense` + activation, `output` (dense + LayerNorm).
#[derive(Clone, Debug)]
pub struct BertBlock {
    /// Query projection.
    pub query: LoraLinear,
    /// Key projection.
    pub key: LoraLinear,
    /// Value projection.
    pub value: LoraLinear,
    /// Attention output projection.
    pub attention_output: LoraLinear,
    /// Norm after attention.
    pub attention_norm: LayerNorm,
    /// Feed-forward expansion.
    pub intermediate: LoraLinear,
    /// Feed-forward contraction.
    pub output: LoraLinear,
    /// Norm after the feed-forward block.
    pub output_norm: LayerNorm,
}

/// The BERT encoder (`BertModel`), optionally with its pooler (`tanh(dense(h_[CLS]))`).
#[derive(Clone, Debug)]
pub struct BertModel {
    /// The config.
    pub config: BertConfig,
    prefix: String,
    /// Token embeddings.
    pub word_embeddings: Embedding,
    /// Position embeddings.
    pub position_embeddings: Embedding,
    /// Segment embeddings.
    pub token_type_embeddings: Embedding,
    /// Embedding norm.
    pub embeddings_norm: LayerNorm,
    /// Transformer blocks.
    pub layers: Vec<BertBlock>,
    /// The pooler dense layer, when present.
    pub pooler: Option<LoraLinear>,
    training: bool,
}

impl BertModel {
    pub(crate) fn build(
        config: &BertConfig,
        prefix: &str,
        with_pooler: bool,
        pooler_required: bool,
        src: &mut Source<'_>,
    ) -> Result<Self> {
        config.validate()?;
        let c = config;
        let n = |rest: &str| -> Vec<String> {
            let mut v = vec![format!("{prefix}{rest}")];
            for alt in ["", "bert."] {
                let s = format!("{alt}{rest}");
                if !v.contains(&s) {
                    v.push(s);
                }
            }
            v
        };
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        let word_embeddings = src.embedding(
            &n("embeddings.word_embeddings"),
            c.vocab_size,
            h,
            c.pad_token_id,
        )?;
        let position_embeddings = src.embedding(
            &n("embeddings.position_embeddings"),
            c.max_position_embeddings,
            h,
            None,
        )?;
        let token_type_embeddings = src.embedding(
            &n("embeddings.token_type_embeddings"),
            c.type_vocab_size,
            h,
            None,
        )?;
        let embeddings_norm = src.norm(&n("embeddings.LayerNorm"), h, eps)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = |rest: &str| n(&format!("encoder.layer.{i}.{rest}"));
            layers.push(BertBlock {
                query: src.linear(&l("attention.self.query"), h, h, true)?,
                key: src.linear(&l("attention.self.key"), h, h, true)?,
                value: src.linear(&l("attention.self.value"), h, h, true)?,
                attention_output: src.linear(&l("attention.output.dense"), h, h, true)?,
                attention_norm: src.norm(&l("attention.output.LayerNorm"), h, eps)?,
                intermediate: src.linear(&l("intermediate.dense"), h, c.intermediate_size, true)?,
                output: src.linear(&l("output.dense"), c.intermediate_size, h, true)?,
                output_norm: src.norm(&l("output.LayerNorm"), h, eps)?,
            });
        }
        let pooler = if with_pooler {
            Some(src.linear(&n("pooler.dense"), h, h, pooler_required)?)
        } else {
            None
        };
        Ok(Self {
            config: c.clone(),
            prefix: prefix.to_string(),
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
        let mut src = Source {
            weights: None,
            rng: forge_linalg::seeded_rng(seed),
            std: config.initializer_range,
            device: device.clone(),
        };
        Self::build(config, "", true, false, &mut src)
    }

    /// Load a bare encoder (`BertModel`, e.g. MiniLM; module paths without prefix). Checkpoint
    /// names with or without a `bert.` prefix are accepted; the pooler is loaded when present.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`] / [`ModelError::ShapeMismatch`] naming the tensor.
    pub fn from_weights(
        config: &BertConfig,
        weights: &crate::Weights,
        device: &Device,
    ) -> Result<Self> {
        let has_pooler = weights
            .names()
            .iter()
            .any(|n| n.ends_with("pooler.dense.weight"));
        let mut src = Source {
            weights: Some(weights),
            rng: forge_linalg::seeded_rng(0),
            std: config.initializer_range,
            device: device.clone(),
        };
        Self::build(config, "", has_pooler, true, &mut src)
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
        let mask = additive_mask(&mask)?;
        for l in &self.layers {
            let ctx = self_attention(
                &l.query,
                &l.key,
                &l.value,
                &x,
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
        Ok(x)
    }

    /// The pooled `[CLS]` representation `tanh(W h_0 + b)`.
    ///
    /// # Shapes
    /// `[b, s, hidden]` -> `[b, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::Config`] when the model has no pooler.
    pub fn pool(&self, hidden: &Tensor) -> Result<Tensor> {
        let pooler = self.pooler.as_ref().ok_or(ModelError::Config {
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
            format!("{p}embeddings.token_type_embeddings"),
            ModuleMut::Params(vec![("weight", &mut self.token_type_embeddings.weight)]),
        ));
        out.push((
            format!("{p}embeddings.LayerNorm"),
            ModuleMut::Params(self.embeddings_norm.params_mut()),
        ));
        for (i, l) in self.layers.iter_mut().enumerate() {
            let b = format!("{p}encoder.layer.{i}.");
            out.push((
                format!("{b}attention.self.query"),
                ModuleMut::Linear(&mut l.query),
            ));
            out.push((
                format!("{b}attention.self.key"),
                ModuleMut::Linear(&mut l.key),
            ));
            out.push((
                format!("{b}attention.self.value"),
                ModuleMut::Linear(&mut l.value),
            ));
            out.push((
                format!("{b}attention.output.dense"),
                ModuleMut::Linear(&mut l.attention_output),
            ));
            out.push((
                format!("{b}attention.output.LayerNorm"),
                ModuleMut::Params(l.attention_norm.params_mut()),
            ));
            out.push((
                format!("{b}intermediate.dense"),
                ModuleMut::Linear(&mut l.intermediate),
            ));
            out.push((format!("{b}output.dense"), ModuleMut::Linear(&mut l.output)));
            out.push((
                format!("{b}output.LayerNorm"),
                ModuleMut::Params(l.output_norm.params_mut()),
            ));
        }
        if let Some(pl) = self.pooler.as_mut() {
            out.push((format!("{p}pooler.dense"), ModuleMut::Linear(pl)));
        }
    }
}

impl LoraModel for BertModel {
    fn architecture(&self) -> String {
        "bert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.push_modules(&mut v);
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
#[derive(Clone, Debug)]
pub struct BertForSequenceClassification {
    /// The encoder with pooler (paths under `bert.`).
    pub bert: BertModel,
    /// Output layer `[num_labels, hidden]`.
    pub classifier: LoraLinear,
    training: bool,
}

impl BertForSequenceClassification {
    pub(crate) fn build(config: &BertConfig, src: &mut Source<'_>) -> Result<Self> {
        let bert = BertModel::build(config, "bert.", true, false, src)?;
        let classifier = src.linear(
            &["classifier".to_string()],
            config.hidden_size,
            config.num_labels(),
            false,
        )?;
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
        let mut src = Source {
            weights: None,
            rng: forge_linalg::seeded_rng(seed),
            std: config.initializer_range,
            device: device.clone(),
        };
        Self::build(config, &mut src)
    }

    /// Load from a checkpoint; a missing pooler or classifier is newly initialised with `seed`.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`] / [`ModelError::ShapeMismatch`] naming the tensor.
    pub fn from_weights(
        config: &BertConfig,
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

impl LoraModel for BertForSequenceClassification {
    fn architecture(&self) -> String {
        "bert".into()
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        let mut v = Vec::new();
        self.bert.push_modules(&mut v);
        v.push(("classifier".into(), ModuleMut::Linear(&mut self.classifier)));
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
