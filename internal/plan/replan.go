package plan

// SameChanges reports whether a and b, two plans of one desired state, send the same
// changes with the same safety verdict: a plan computed again under the account lock
// equals the one that was approved before it was taken, so it may run without asking
// again. The remote objects they depend on may differ in what no change carries.
func SameChanges(a, b *Plan) bool {
	return a.Owner == b.Owner && sameJSON(a.Users, b.Users) && a.Safety.Safe == b.Safety.Safe &&
		a.Safety.Deletes == b.Safety.Deletes && sameJSON(a.Safety.Reasons, b.Safety.Reasons)
}
