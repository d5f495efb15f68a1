//! Long explanations of every diagnostic code (`upcc explain CODE`).

/// (code, one-line title, explanation).
pub const CODES: &[(&str, &str, &str)] = &[
    ("E0001", "syntax error", "The file does not follow the .upc grammar. The error points at the first token the parser could not accept and lists what it expected there.\n\nExample:\n    network net = conv_small() weights\n                                      ^ expected a string or an expression\n\nFix the token at the marked position; errors after it are not reported until it parses."),
    ("E0002", "nesting too deep", "Brackets (`(`, `[`, `{`) are nested more than 64 levels deep. No real spec needs this; the limit keeps the parser's recursion bounded."),
    ("E0101", "unknown name", "A name is used that is not declared in this file and not imported.\n\n    use std::nets::conv_small\n    network n = conv_smal() weights \"w.safetensors\"   // typo\n\nDeclare the item, fix the spelling, or import it with `use std::MODULE::NAME` or `use \"file.upc\"`."),
    ("E0102", "wrong kind of item", "A name refers to an item of another kind than the place requires: for example a dataset where a network is expected (`certify accuracy of NET on DATA under PERT`), or a network used inside an expression."),
    ("E0103", "unknown layer or block", "A layer statement calls something that is neither a builtin layer (linear, conv2d, relu, flatten, reshape, add, normalize, batchnorm, avgpool, maxpool, identity) nor a block in scope."),
    ("E0104", "duplicate definition", "A name is declared twice: two top-level items, an item and an import, or two layers of one block. Layer names must be unique within a block because weights are bound by name; `input` is reserved for the block input."),
    ("E0105", "import cycle", "Files import each other in a cycle (a.upc uses b.upc which uses a.upc). Move the shared declarations into a third file that both import."),
    ("E0106", "cannot resolve module", "A `use` names a standard module that does not exist (the standard library has `std::nets` and `std::data`) or a file that cannot be read. File paths are relative to the importing file."),
    ("E0107", "item not found in module", "`use MODULE::NAME` names an item the module does not declare."),
    ("E0108", "recursive definition", "A constant is defined in terms of itself, or a block instantiates itself (directly or through other blocks). Networks must be finite."),
    ("E0109", "unknown layer reference", "`from NAME` must name a layer declared earlier in the same block, or `input` (the block's input). Layers can only read layers above them."),
    ("E0110", "bad arguments", "A layer, block or source call has an unknown, repeated, extra or missing argument. Builtin signatures:\n    linear(in, out)\n    conv2d(in, out, kernel, stride: 1, padding: 0)\n    avgpool(kernel, stride: kernel, padding: 0), maxpool(...)\n    normalize(mean, std), batchnorm(channels, eps: 1e-5), reshape(shape)\n    relu, flatten, identity, add (with `from a, b`)."),
    ("E0111", "unknown or repeated property option", "Property options are `bounds`, `solver`, `confidence`, `compare` and `attacks`, each given at most once."),
    ("E0112", "invalid option value", "An option has a value of the wrong form. Accepted values:\n    bounds: ibp | crown | alpha-crown(iterations: 20, lr: 0.1)\n    solver: microlp(time_limit: 60s) | highs(time_limit: 60s)\n    confidence: a number strictly between 0 and 1 (1 − ξ of Theorem 2)\n    compare: samplewise | none\n    attacks: a list of pgd, df_uap, cos_uap, adv_uap (universal) and samplewise_pgd"),
    ("E0113", "invalid dataset", "The dataset source is unknown (sources: npz, npy, idx, cifar, csv, noise), a transform is repeated (one `scale` and one selection), or certified accuracy is asked of an unlabelled noise dataset (use `certify classwise accuracy`)."),
    ("E0114", "invalid network list", "Only `certify classwise accuracy of [a, b, c] ...` takes several networks: a backdoor scan averages the class-wise certified rates of models trained on one data set with different seeds (paper Appendix B). The networks must have the same classes. Certified accuracy (`certify accuracy of net ...`) is of one network."),
    ("E0201", "type mismatch", "A value has the wrong type: e.g. a string where an integer is needed, or a number where a list is needed."),
    ("E0202", "division by zero", "A constant expression divides by zero."),
    ("E0203", "number out of range", "A constant does not fit the exact arithmetic (128-bit rationals) or a 64-bit fraction where one is required."),
    ("E0204", "invalid integer", "A dimension, channel count, kernel, stride, sample count or seed must be an integer (≥ 1 for sizes, ≥ 0 for padding and seeds). Fractions such as 3/2 are rejected rather than rounded."),
    ("E0205", "invalid ε", "ε is the radius of an ℓ∞ ball in pixel units: it must be a non-negative number, and an ε list must not be empty."),
    ("E0206", "ε is not a number", "ε must be a number such as 8/255, a list of numbers (a sweep), or with `per_channel` a list with one number per input channel."),
    ("E0210", "channel mismatch", "A conv2d or batchnorm layer declares a channel count that differs from the channels of its input."),
    ("E0211", "linear size mismatch", "A linear layer's input size differs from the number of values its input produces. After conv layers the size is C·H·W of the flattened feature map."),
    ("E0212", "add shape mismatch", "Both operands of `add` must have exactly the same shape. In a residual block, use a 1×1 strided conv shortcut when the main path changes channels or resolution."),
    ("E0213", "kernel larger than input", "A conv or pooling kernel is larger than its padded input, so the output would be empty."),
    ("E0214", "reshape size mismatch", "`reshape` must keep the number of elements."),
    ("E0215", "wrong input rank", "conv2d and pooling need an image input [C, H, W]; linear needs a vector. Insert `flatten()` between the convolutional and linear parts."),
    ("E0216", "missing input shape", "A block used as a network must start with `input [C, H, W]` so that shapes can be inferred."),
    ("E0217", "bad network output", "A network must end in a vector of at least two class scores (logits)."),
    ("E0218", "data does not fit the network", "A property certifies a network on a dataset whose per-sample shape differs from the network's input shape."),
    ("E0219", "per-channel ε size mismatch", "A per-channel ε needs exactly one radius per input channel of the network."),
    ("E0220", "wrong number of layer inputs", "`add` takes two inputs (`add from a, b`); every other layer and block takes one."),
    ("E0221", "invalid normalisation", "`normalize(mean, std)` needs one mean and one positive std per channel (or one value for all channels)."),
    ("E0222", "misplaced input statement", "`input` must be the first statement of a block, and a nested block's declared input must match what it receives."),
    ("E0301", "file not found", "A weight, data or model file does not exist or cannot be read. Relative paths are resolved against the directory of the .upc file that names them."),
    ("E0302", "corrupt file", "A file is truncated, corrupt, or not in the format its extension claims (or its images and labels disagree in count)."),
    ("E0303", "unsupported content", "A file is valid but uses something upcc does not support: a tensor dtype, or ONNX operators outside Conv, Gemm, MatMul, Add, Sub, Div, Mul, Relu, Flatten, Reshape, BatchNormalization and constant subgraphs. Every unsupported node is listed."),
    ("E0304", "non-finite values", "A weight or input contains NaN or infinity (or batchnorm statistics give a non-positive variance). Bounds over such a network are meaningless, so it is rejected."),
    ("E0305", "missing weight", "A layer named L binds tensors L.weight and L.bias (batchnorm also L.running_mean and L.running_var). Unnamed layers are named by their index in the block, as in a PyTorch nn.Sequential; layers of a nested block `b = block(...)` are prefixed `b.`."),
    ("E0306", "weight shape mismatch", "A tensor's shape differs from the layer's declared shape: linear weights are [out, in], conv weights [out, in, kh, kw], biases [out]."),
    ("E0307", "empty dataset", "The dataset holds no samples."),
    ("E0308", "label out of range", "A label is not below the network's number of classes."),
    ("E0309", "selection out of range", "`first n`, `range a..b` or `sample n seed s` asks for more samples than the dataset has, or the range is empty."),
    ("E0310", "network without weights", "A network declared without `weights` can be shape-checked but not certified."),
    ("E0311", "invalid ONNX graph", "The ONNX model could be decoded but not imported (dangling names, inconsistent shapes, ...)."),
    ("E0312", "pixels outside [0, 1]", "Warning: after scaling, some input values lie outside [0, 1]. ε is in pixel units of [0, 1] images; set `| scale 1/255` for 0–255 data or `| scale 1` for data already in [0, 1]."),
    ("E0401", "internal lowering error", "The lowered IR broke an invariant. This is a bug in upcc."),
    ("E0402", "operation not supported by the bound engine", "The network contains a layer the bound engines cannot relax soundly, such as max pooling. `upcc check` accepts it (shapes are fine); `upcc verify` refuses it. Replace max pooling by average pooling or a strided convolution."),
    ("E0403", "invalid engine input", "The samples, labels or perturbation box handed to the bound engine do not fit the network (sizes, label range, a box with lo > hi or non-finite ends). The front end checks all of these, so this usually means a bug in upcc."),
    ("E0404", "non-finite bound", "A bound became NaN or infinite while propagating through the network, e.g. because weights or inputs are extremely large. Such a bound certifies nothing, so the run stops rather than report a number."),
    ("E0501", "MILP failure", "The universal MILP (paper Theorem 1) could not be built or solved: its input was inconsistent or the solver failed. No certified number is reported for the property."),
    ("E0502", "attack failure", "An attack could not run on the property's samples (bad shapes or non-finite values). Attacks give the upper bounds that certificates are checked against, so the property stops."),
    ("E0503", "population bound failure", "Theorem 2's t*(ξ, n) could not be computed for the property's confidence and sample count."),
    ("E0504", "solver not built in", "The property asks for HiGHS, but this upcc was built without the `highs` feature. Rebuild with `cargo build --release --features highs` (needs cmake and libclang-dev), or use `solver: microlp(...)`."),
    ("E0505", "soundness check failed", "A certified number contradicts a concrete result: more samples certified than remain correct under an attack's perturbation or the replayed worst-case δ, a sample certified sample-wise that an attack fools, or a universal count below the sample-wise one. upcc refuses to report such a certificate; this is a bug in upcc, please report it with the spec."),
];

/// The explanation of `code` (case-insensitive), as printed by `upcc explain`.
pub fn explain(code: &str) -> Option<String> {
    CODES
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(code))
        .map(|(c, title, text)| format!("{c}: {title}\n\n{text}\n"))
}
