"""Calendar features: holidays by frequency, in the data's local time."""
import pandas as pd
import torch

from forecasting.data.calendar import calendar_features, holiday_names


def test_hourly_holidays_flag_the_day_the_day_before_and_the_day_after_in_local_time():
    idx = pd.date_range("2016-12-23", periods=24 * 5, freq="h", tz="Australia/Melbourne")
    names = holiday_names("h")
    f = calendar_features(idx, "h", fourier=False)
    assert f.shape == (120, len(names)) and len(names) == 3 * 8
    day = lambda d: slice((d - 23) * 24, (d - 22) * 24)  # noqa: E731  the 24 hours of 23..27 December
    col = {n: f[:, names.index(n)] for n in ("Christmas_next", "Christmas", "Christmas_prev")}
    assert bool((col["Christmas_next"][day(24)] == 1).all()) and col["Christmas_next"].sum() == 24
    assert bool((col["Christmas"][day(25)] == 1).all()) and col["Christmas"].sum() == 24
    assert bool((col["Christmas_prev"][day(26)] == 1).all()) and col["Christmas_prev"].sum() == 24
    # the daily and weekly columns are unchanged; models saved before hourly holidays keep their width
    assert holiday_names("D") == names and holiday_names("h", subdaily=False) == []
    old = calendar_features(idx, "h", subdaily_holidays=False)
    assert old.shape[1] == calendar_features(idx, "h").shape[1] - len(names)
    assert torch.equal(old, calendar_features(idx, "h")[:, :old.shape[1]])
