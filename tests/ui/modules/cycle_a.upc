use "cycle_b.upc"
const a = 1
