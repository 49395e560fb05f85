package metrics

import (
	"reflect"
	"testing"
)

// TestFullRunSetsEveryField: a field of Run left zero in fullRun could hide the metrics
// it controls from Catalog, and so from docs/output.md.
func TestFullRunSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(fullRun())
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsZero() {
			t.Errorf("fullRun leaves Run.%s zero: set it, so that Catalog lists the metrics it adds", v.Type().Field(i).Name)
		}
	}
}

func TestCatalogListsEveryMetric(t *testing.T) {
	descs, err := Catalog()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, d := range descs {
		names[d.Name] = true
		if d.Help == "" {
			t.Errorf("%s has no help", d.Name)
		}
	}
	for _, want := range []string{"cbk_sync_last_run_exit_code", "cbk_sync_actions", "cbk_sync_pending_changes", "cbk_sync_polls", "cbk_sync_account_users", "cbk_sync_last_success_timestamp_seconds"} {
		if !names[want] {
			t.Errorf("Catalog has no %s: %v", want, names)
		}
	}
}
