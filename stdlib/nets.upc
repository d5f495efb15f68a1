use std::data::{cifar10_mean, cifar10_std}

// The paper's architectures (ICLR 2023, Table 6) and the basic residual block.
// No batchnorm anywhere; every conv has a bias. Layer names bind PyTorch state_dict tensors
// (`conv1.weight`, `conv1.bias`, ...); blocks nest as `block1.conv1.weight`.

// Conv-small (MNIST): 89,606 parameters, 3,604 ReLUs.
block conv_small() {
    input [1, 28, 28]
    conv1 = conv2d(1, 16, kernel: 4, stride: 2)
    relu1 = relu
    conv2 = conv2d(16, 32, kernel: 4, stride: 2)
    relu2 = relu
    flat = flatten
    fc1 = linear(800, 100)
    relu3 = relu
    fc2 = linear(100, 10)
}

// Conv-4-layer (MNIST): conv-small with padding 1; 166,406 parameters, 4,804 ReLUs.
block conv_4layer() {
    input [1, 28, 28]
    conv1 = conv2d(1, 16, kernel: 4, stride: 2, padding: 1)
    relu1 = relu
    conv2 = conv2d(16, 32, kernel: 4, stride: 2, padding: 1)
    relu2 = relu
    flat = flatten
    fc1 = linear(1568, 100)
    relu3 = relu
    fc2 = linear(100, 10)
}

// Conv-big (MNIST): 1,974,762 parameters, 48,064 ReLUs.
block conv_big() {
    input [1, 28, 28]
    conv1 = conv2d(1, 32, kernel: 3, stride: 1, padding: 1)
    relu1 = relu
    conv2 = conv2d(32, 32, kernel: 4, stride: 2, padding: 1)
    relu2 = relu
    conv3 = conv2d(32, 64, kernel: 3, stride: 1, padding: 1)
    relu3 = relu
    conv4 = conv2d(64, 64, kernel: 4, stride: 2, padding: 1)
    relu4 = relu
    flat = flatten
    fc1 = linear(3136, 512)
    relu5 = relu
    fc2 = linear(512, 512)
    relu6 = relu
    fc3 = linear(512, 10)
}

// Basic residual block: relu(conv3x3) -> conv3x3 -> + shortcut -> relu.
// The shortcut is a 1x1 strided conv (`shortcut.0`) when channels or resolution change, else the
// identity. Tensor names follow the VNN-COMP 2021 CIFAR ResNets (PyTorch `BasicBlock`).
block basic_block(cin, cout, stride) {
    conv1 = conv2d(cin, cout, kernel: 3, stride: stride, padding: 1)
    relu1 = relu
    conv2 = conv2d(cout, cout, kernel: 3, stride: 1, padding: 1)
    shortcut = if stride != 1 || cin != cout {
        projection(cin, cout, stride)
    } else {
        identity
    } from input
    sum = add from conv2, shortcut
    out = relu
}

// A 1x1 strided conv, named `0` as in PyTorch's `nn.Sequential(conv)` shortcut.
block projection(cin, cout, stride) {
    conv2d(cin, cout, kernel: 1, stride: stride)
}

// Two basic blocks, named `0` and `1` (PyTorch `layerN.0`, `layerN.1`).
block resnet_stage(cin, cout, stride) {
    basic_block(cin, cout, stride)
    basic_block(cout, cout, 1)
}

// ResNet-2B (CIFAR-10, VNN-COMP 2021): 112,006 parameters, 6,244 ReLUs.
// Its tensors are named as in resnet_2b.onnx: conv1, layer1.{0,1}.{conv1,conv2,shortcut.0},
// linear1, linear2; so `resnet_2b() weights "resnet_2b.onnx"` binds that file's initializers.
block resnet_2b() {
    input [3, 32, 32]
    // The ONNX graphs expect normalised input; normalising here keeps ε in pixel units.
    norm = normalize(cifar10_mean, cifar10_std)
    conv1 = conv2d(3, 8, kernel: 3, stride: 2, padding: 1)
    relu1 = relu
    layer1 = resnet_stage(8, 16, 2)
    flat = flatten
    linear1 = linear(1024, 100)
    relu2 = relu
    linear2 = linear(100, 10)
}

// ResNet-4B (CIFAR-10, VNN-COMP 2021): 123,734 parameters, 14,436 ReLUs.
// Tensor names as in resnet_4b.onnx (layer1 and layer2 hold two blocks each).
block resnet_4b() {
    input [3, 32, 32]
    // The ONNX graphs expect normalised input; normalising here keeps ε in pixel units.
    norm = normalize(cifar10_mean, cifar10_std)
    conv1 = conv2d(3, 16, kernel: 3, stride: 2, padding: 1)
    relu1 = relu
    layer1 = resnet_stage(16, 32, 2)
    layer2 = resnet_stage(32, 32, 2)
    flat = flatten
    linear1 = linear(512, 100)
    relu2 = relu
    linear2 = linear(100, 10)
}
