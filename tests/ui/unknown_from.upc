block b() {
    input [10]
    l1 = linear(10, 10)
    s = add from l1, l2
}
network n = b()
