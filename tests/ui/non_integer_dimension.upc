const hidden = 100 / 3
block b() {
    input [1, 28, 28]
    flatten
    fc1 = linear(784, hidden)
}
network n = b()
