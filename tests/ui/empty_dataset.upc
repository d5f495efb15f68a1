dataset d = npz("fixtures/empty.npz")
