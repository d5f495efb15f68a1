dataset d = mnist("data/mnist")
