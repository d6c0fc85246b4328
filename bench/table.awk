# bench/table.awk: the rows of RESULTS.md's headline table, from the
# tab-separated rows the benchmarks append (figure, ours, baseline name,
# baseline, target). A row's ratio is ours/baseline; its target is met when
# the ratio (target "ratio>=X" / "ratio<=X") or our figure (">=X" / "<=X") is
# on the right side of X. Used by bench/all and by bench/run (BENCH_RESULTS).
function num(x) { return x ~ /^-?[0-9]+(\.[0-9]+)?$/ }
function show(x) { return !num(x) ? x : (x + 0 >= 100 ? sprintf("%.0f", x) : sprintf("%.2g", x)) }
BEGIN { FS = "\t" }
{
	fig = $1; ours = $2; bname = $3; base = $4; target = $5
	ratio = "—"
	if (bname != "" && num(ours) && num(base) && base + 0 > 0) ratio = sprintf("%.2f", ours / base)
	met = "—"; shown = "—"
	if (target ~ /^ratio/) {
		op = substr(target, 6, 2); x = substr(target, 8) + 0
		shown = "ratio " op " " x
		v = ratio
	} else if (target != "") {
		op = substr(target, 1, 2); x = substr(target, 3) + 0
		shown = op " " x
		v = ours
	}
	if (target != "") {
		if (!num(v)) met = "n/a"
		else if (op == ">=") met = (v + 0 >= x) ? "yes" : "**no**"
		else met = (v + 0 <= x) ? "yes" : "**no**"
	}
	b = (bname == "") ? "—" : bname " " show(base)
	printf "| %s | %s | %s | %s | %s | %s |\n", fig, show(ours), b, ratio, shown, met
}
