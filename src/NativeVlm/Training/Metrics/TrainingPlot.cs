using ScottPlot;

namespace NativeVlm.Training.Metrics;

/// <summary>
/// The curves of a run as one PNG, against the optimizer step, one panel above the other: loss (train
/// and eval), then the DPO rewards of chosen and rejected completions, then reward accuracy (train and
/// eval). A panel whose metrics were never logged is left out, so an SFT run shows the loss alone.
/// Rendered by ScottPlot through SkiaSharp, on the CPU, with no display.
/// </summary>
public static class TrainingPlot
{
    public const string DefaultFileName = "training_curves.png";

    // Matplotlib's first four colours, fixed so that train is the same blue and eval the same orange in every panel.
    internal static readonly Color TrainColour = Color.FromHex("#1F77B4");
    internal static readonly Color EvalColour = Color.FromHex("#FF7F0E");
    internal static readonly Color ChosenColour = Color.FromHex("#2CA02C");
    internal static readonly Color RejectedColour = Color.FromHex("#D62728");

    private static readonly (string Title, string YLabel, (string Metric, string Legend, Color Colour)[] Series)[] Panels =
    [
        ("Loss", "loss", [("loss", "train", TrainColour), ("eval_loss", "eval", EvalColour)]),
        ("Rewards", "reward", [("rewards/chosen", "chosen", ChosenColour), ("rewards/rejected", "rejected", RejectedColour)]),
        ("Reward accuracy", "accuracy", [("rewards/accuracies", "train", TrainColour), ("eval_rewards/accuracies", "eval", EvalColour)]),
    ];

    /// <summary>Writes the PNG; false, and no file, when no plotted metric was logged.</summary>
    public static bool Save(MetricsHistory history, string path, int width = 1200, int height = 900)
    {
        var plots = new List<Plot>();
        foreach ((string title, string yLabel, (string Metric, string Legend, Color Colour)[] series) in Panels)
        {
            var curves = series.Select(s => (s.Legend, s.Colour, Points: history.Series(s.Metric))).Where(c => c.Points.Steps.Length > 0).ToList();
            if (curves.Count == 0)
            {
                continue;
            }
            var plot = new Plot();
            foreach ((string legend, Color colour, (double[] steps, double[] values)) in curves)
            {
                var line = plot.Add.ScatterLine(steps, values, colour);
                line.LegendText = legend;
                line.LineWidth = 2;
                // A single logged point draws no line; a marker keeps it visible.
                line.MarkerSize = steps.Length == 1 ? 6 : 0;
            }
            plot.Title(title);
            plot.XLabel("step");
            plot.YLabel(yLabel);
            plot.ShowLegend(Edge.Right); // outside the data area, where no curve can pass under it
            plots.Add(plot);
        }
        if (plots.Count == 0)
        {
            return false;
        }
        var figure = new Multiplot(plots[0]) { Layout = new ScottPlot.MultiplotLayouts.Rows() };
        foreach (Plot plot in plots.Skip(1))
        {
            figure.AddPlot(plot);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        figure.SavePng(path, width, height);
        return true;
    }
}
