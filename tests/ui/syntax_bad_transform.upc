dataset d = noise(shape: [1, 28, 28], count: 4, seed: 1) | shuffle 3
