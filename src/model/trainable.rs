//! The trainable tensors of a classifier, j = 1..L (the paper calls each one a "layer"; this
//! crate says "trainable tensor" and indexes them by j everywhere).
//!
//! Every weight matrix, bias, LayerNorm gain and bias of the encoder is its own trainable
//! tensor, then the head's weight and bias. Embeddings (BERT's and RoBERTa's tables and their
//! LayerNorm, GPT-2's `wte` and `wpe`) are frozen unless asked otherwise; a [`Scope`] narrows the
//! encoder's part further (BitFit, LoRA). They are ordered as the module is traversed, which is
//! stable for a given model config.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use super::classifier::Classifier;
use super::encoder::is_embedding;
use super::hf_names::hf_name;

/// Which optimiser group a trainable tensor belongs to (separate learning rates, separate PAC init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Group {
    Encoder,
    Head,
}

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Trainable {
    /// HF name, e.g. `bert.encoder.layer.0.attention.self.query.weight` or `out.bias`.
    pub name: String,
    /// The shape as Burn stores it (Linear weights are `[in, out]`).
    pub shape: Vec<usize>,
    pub group: Group,
}

impl Trainable {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Which tensors of a classifier train: the head always; of the encoder, the part `encoder`
/// names, the embeddings only with `embeddings`. `false`/`true` is every encoder tensor
/// without/with the embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scope {
    pub embeddings: bool,
    pub encoder: EncoderPart,
}

/// The part of the encoder that trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderPart {
    /// Every tensor (full fine-tuning, PGD, PAC).
    #[default]
    All,
    /// The biases, LayerNorm's included (BitFit).
    Biases,
    /// The LoRA factors A and B attached by `Module::apply_lora`; their base weights stay frozen.
    Adapters,
}

impl From<bool> for Scope {
    fn from(embeddings: bool) -> Scope {
        Scope {
            embeddings,
            encoder: EncoderPart::All,
        }
    }
}

impl Scope {
    /// Whether the parameter at module path `path` trains.
    fn trains(self, path: &str) -> bool {
        if !path.starts_with("encoder.") {
            return true;
        }
        if is_embedding(path) && !self.embeddings {
            return false;
        }
        let adapter = path.contains(".lora.");
        match self.encoder {
            EncoderPart::All => !adapter,
            EncoderPart::Biases => !adapter && hf_name(path).ends_with(".bias"),
            EncoderPart::Adapters => adapter,
        }
    }
}

/// The trainable tensors of `model` in `scope`.
pub fn list(model: &Classifier, scope: impl Into<Scope>) -> Vec<Trainable> {
    let mut visitor = ListVisitor {
        path: ModulePath::default(),
        scope: scope.into(),
        tensors: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor
        .tensors
        .into_iter()
        .map(|(path, shape)| Trainable {
            name: model.hf_name(&path),
            shape,
            group: group_of(&path),
        })
        .collect()
}

/// `model` with gradients off for every tensor outside `scope`, so that backward passes skip
/// them.
pub fn freeze_outside(model: Classifier, scope: Scope) -> Classifier {
    model.map(&mut FreezeMapper {
        path: ModulePath::default(),
        scope,
    })
}

struct FreezeMapper {
    path: ModulePath,
    scope: Scope,
}

impl ModuleMapper for FreezeMapper {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.scope.trains(&self.path.joined()) {
            param
        } else {
            param.set_require_grad(false)
        }
    }
}

fn group_of(path: &str) -> Group {
    if path.starts_with("encoder.") {
        Group::Encoder
    } else {
        Group::Head
    }
}

/// The dotted path of the module being visited, with enum variants left out (as burn-store
/// names tensors when it skips them).
#[derive(Default)]
struct ModulePath(Vec<Option<String>>);

impl ModulePath {
    fn enter(&mut self, name: &str, container_type: &str) {
        let variant = container_type.starts_with("Enum:");
        self.0.push((!variant).then(|| name.to_string()));
    }

    fn exit(&mut self) {
        self.0.pop();
    }

    fn joined(&self) -> String {
        let parts: Vec<&str> = self.0.iter().flatten().map(String::as_str).collect();
        parts.join(".")
    }
}

struct ListVisitor {
    path: ModulePath,
    scope: Scope,
    tensors: Vec<(String, Vec<usize>)>,
}

impl ModuleVisitor for ListVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.joined();
        if self.scope.trains(&path) {
            self.tensors.push((path, param.val().dims().to_vec()));
        }
    }
}

/// Replaces every trainable tensor by `f(j, tensor flattened to 1-D)`, keeping
/// parameter ids; frozen tensors pass through. `f` sees plain (untracked) tensors; the results
/// are tracked again when `model` lives on an autodiff device.
pub fn map(
    model: Classifier,
    scope: impl Into<Scope>,
    f: impl FnMut(usize, Tensor<1>) -> Tensor<1>,
) -> Classifier {
    let mut mapper = TrainableMapper {
        path: ModulePath::default(),
        scope: scope.into(),
        index: 0,
        f,
    };
    model.map(&mut mapper)
}

struct TrainableMapper<F> {
    path: ModulePath,
    scope: Scope,
    index: usize,
    f: F,
}

impl<F: FnMut(usize, Tensor<1>) -> Tensor<1>> ModuleMapper for TrainableMapper<F> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.scope.trains(&self.path.joined()) {
            return param;
        }
        let (id, tensor, mapper): (ParamId, Tensor<D>, _) = param.consume();
        let dims = tensor.dims();
        // Tracked again with the device's gradient-checkpointing strategy (operands must share one).
        let strategy = tensor.gradient_checkpointing_strategy();
        let plain = match strategy {
            Some(_) => tensor.inner(),
            None => tensor,
        };
        let updated = (self.f)(self.index, flat(plain)).reshape(dims);
        self.index += 1;
        let updated = match strategy {
            Some(s) => Tensor::from_inner(updated)
                .with_gradient_checkpointing_strategy(s)
                .require_grad(),
            None => updated,
        };
        Param::from_mapped_value(id, updated, mapper)
    }
}

fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let numel = t.dims().iter().product::<usize>();
    t.reshape([numel])
}

/// Calls `f(j, value, gradient)` for every trainable tensor in order, with the
/// value (plain) and its gradient in `grads` (if any) flattened to 1-D.
pub fn visit(
    model: &Classifier,
    scope: impl Into<Scope>,
    grads: Option<&Gradients>,
    mut f: impl FnMut(usize, Tensor<1>, Option<Tensor<1>>),
) {
    let mut index = 0;
    let mut call = |value: Tensor<1>, grad: Option<Tensor<1>>| {
        f(index, value, grad);
        index += 1;
    };
    let mut visitor = ValueVisitor {
        path: ModulePath::default(),
        scope: scope.into(),
        grads,
        f: &mut call,
    };
    model.visit(&mut visitor);
}

type TensorCallback<'a> = &'a mut dyn FnMut(Tensor<1>, Option<Tensor<1>>);

struct ValueVisitor<'a> {
    path: ModulePath,
    scope: Scope,
    grads: Option<&'a Gradients>,
    f: TensorCallback<'a>,
}

impl ModuleVisitor for ValueVisitor<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.scope.trains(&self.path.joined()) {
            let value = param.val();
            let grad = self.grads.and_then(|g| value.grad(g)).map(flat);
            let value = if value.is_autodiff() {
                value.inner()
            } else {
                value
            };
            (self.f)(flat(value), grad);
        }
    }
}
