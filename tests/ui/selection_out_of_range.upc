dataset d = noise(shape: [1, 28, 28], count: 10, seed: 1) | first 20
dataset e = noise(shape: [1, 28, 28], count: 10, seed: 1) | range 5..5
