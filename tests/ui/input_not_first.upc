block b() {
    flatten
    input [1, 28, 28]
}
