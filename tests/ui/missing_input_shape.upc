block b() {
    flatten
    fc = linear(784, 10)
}
network n = b()
