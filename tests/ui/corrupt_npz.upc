dataset d = npz("fixtures/corrupt.npz")
