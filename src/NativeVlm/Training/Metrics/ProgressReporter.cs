using System.Globalization;

namespace NativeVlm.Training.Metrics;

/// <summary>
/// Training progress on the console. On a terminal, one status line redrawn in place (carriage return,
/// no newline) at each logging step:
/// <code>[######--------------] step 90/300 30% | epoch 0.90 | loss 0.5123 | accuracy 0.750 | 12.5 samples/s | ETA 0:02:48</code>
/// When the output is redirected (a log file, CI), the same fields without the bar, one line per
/// logging step, so that the log reads top to bottom. Evaluations (eval_ metrics) and events are
/// printed as lines of their own in both modes, above the status line.
/// <para>
/// The ETA assumes the pace since the first logged step (loading and compilation before it are not
/// counted) holds for the steps left.
/// </para>
/// </summary>
public sealed class ProgressReporter : ITrainingLog, IDisposable
{
    private const int BarWidth = 20;

    private readonly long _totalSteps;
    private readonly TextWriter _output;
    private readonly bool _redrawInPlace;
    private readonly TimeProvider _time;
    private readonly Func<int> _columns;

    /// <summary>The first logged step and when it came, the ETA's reference.</summary>
    private (long Step, long Timestamp)? _paceFrom;

    /// <summary>The status line on screen, not ended by a newline (in-place mode only); null when there is none.</summary>
    private string? _statusShown;

    /// <summary>To the console: in place when stdout is a terminal, plain lines when it is redirected.</summary>
    public ProgressReporter(long totalSteps)
        : this(totalSteps, Console.Out, redrawInPlace: !Console.IsOutputRedirected, TimeProvider.System, () => Console.WindowWidth)
    {
    }

    /// <param name="columns">The terminal's width, read at every redraw (terminals resize): a status line
    /// longer than it would wrap, and a carriage return then redraws only its last row.</param>
    internal ProgressReporter(long totalSteps, TextWriter output, bool redrawInPlace, TimeProvider time, Func<int> columns)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(totalSteps);
        (_totalSteps, _output, _redrawInPlace, _time, _columns) = (totalSteps, output, redrawInPlace, time, columns);
    }

    public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics)
    {
        var evaluation = metrics.Where(m => m.Key.StartsWith("eval_", StringComparison.Ordinal)).ToList();
        if (evaluation.Count > 0)
        {
            string results = string.Join(" | ", evaluation.Select(m => $"{m.Key["eval_".Length..]} {Number(m.Value, "F4")}"));
            WriteLineAboveStatus($"eval at step {step}: {results}");
        }
        if (evaluation.Count == metrics.Count && evaluation.Count > 0)
        {
            return; // An evaluation only: the status line stays as it was.
        }
        long now = _time.GetTimestamp();
        _paceFrom ??= (step, now);
        string status = Status(step, epoch, metrics, now);
        if (!_redrawInPlace)
        {
            _output.WriteLine(status);
            return;
        }
        int columns = _columns();
        if (columns > 1 && status.Length >= columns)
        {
            status = status[..(columns - 1)];
        }
        ReplaceStatus(status);
        if (step >= _totalSteps)
        {
            _output.WriteLine(); // The last step: the line stays, and what follows starts below it.
            _statusShown = null;
        }
    }

    public void Event(string message) => WriteLineAboveStatus(message);

    /// <summary>Ends a status line left on screen, so that the shell prompt or the summary starts on a line of its own.</summary>
    public void Dispose()
    {
        if (_statusShown is not null)
        {
            _output.WriteLine();
            _statusShown = null;
        }
    }

    private string Status(long step, double epoch, IReadOnlyDictionary<string, double> metrics, long now)
    {
        double fraction = Math.Clamp((double)step / _totalSteps, 0, 1);
        var fields = new List<string> { $"step {step}/{_totalSteps} {Number(fraction * 100, "F0")}%", $"epoch {Number(epoch, "F2")}" };
        if (metrics.TryGetValue("loss", out double loss))
        {
            fields.Add($"loss {Number(loss, "F4")}");
        }
        if (metrics.TryGetValue("rewards/accuracies", out double accuracy))
        {
            fields.Add($"accuracy {Number(accuracy, "F3")}");
        }
        if (metrics.TryGetValue("samples_per_second", out double samplesPerSecond))
        {
            fields.Add($"{Number(samplesPerSecond, "F1")} samples/s");
        }
        fields.Add($"ETA {Eta(step, now)}");
        string line = string.Join(" | ", fields);
        if (!_redrawInPlace)
        {
            return line;
        }
        int filled = (int)Math.Round(fraction * BarWidth);
        return $"[{new string('#', filled)}{new string('-', BarWidth - filled)}] {line}";
    }

    /// <summary>h:mm:ss, or "?" before a second step has given a pace.</summary>
    private string Eta(long step, long now)
    {
        (long firstStep, long firstTimestamp) = _paceFrom!.Value;
        if (step <= firstStep)
        {
            return "?";
        }
        TimeSpan perStep = _time.GetElapsedTime(firstTimestamp, now) / (step - firstStep);
        TimeSpan left = perStep * Math.Max(0, _totalSteps - step);
        return string.Create(CultureInfo.InvariantCulture, $"{(long)left.TotalHours}:{left.Minutes:00}:{left.Seconds:00}");
    }

    private void WriteLineAboveStatus(string line)
    {
        if (_statusShown is null)
        {
            _output.WriteLine(line);
            return;
        }
        string status = _statusShown;
        ReplaceStatus(line);
        _output.WriteLine();
        _statusShown = null;
        ReplaceStatus(status);
    }

    /// <summary>Draws over the status line on screen: back to its start, the new text, spaces over what is left of the old one.</summary>
    private void ReplaceStatus(string text)
    {
        _output.Write('\r');
        _output.Write(text.PadRight(_statusShown?.Length ?? 0));
        _statusShown = text;
    }

    private static string Number(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
