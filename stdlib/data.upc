// Normalisation constants (per channel, in [0, 1] pixel units) for `normalize(mean, std)`.

const mnist_mean = [0.1307]
const mnist_std = [0.3081]

const cifar10_mean = [0.4914, 0.4822, 0.4465]
const cifar10_std = [0.2471, 0.2435, 0.2616]
