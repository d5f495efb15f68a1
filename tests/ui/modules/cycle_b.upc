use "cycle_a.upc"
const b = 2
