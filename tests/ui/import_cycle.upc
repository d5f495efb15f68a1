use "modules/cycle_a.upc"
const c = a + 1
