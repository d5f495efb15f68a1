dataset d = npz("no_such_data.npz") | first 10
