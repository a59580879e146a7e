using NativeVlm.Training.Metrics;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>The PNG of the curves, decoded by the repository's own PNG decoder, and each curve found by its colour.</summary>
public class TrainingPlotTests
{
    private const int Width = 800, Height = 600;

    /// <summary>
    /// A curve drawn 2 pixels wide across a panel several hundred pixels wide covers well over a
    /// thousand pixels of its colour; its legend swatch alone, a few dozen. 300 tells the two apart.
    /// </summary>
    private const int CurvePixels = 300;

    /// <summary>A DPO run of 40 steps: loss falling, chosen rewards rising and rejected falling, evaluation every 10 steps.</summary>
    private static MetricsHistory DpoRun()
    {
        var history = new MetricsHistory();
        for (int step = 1; step <= 40; step++)
        {
            double t = step / 40.0;
            history.Log(step, t, new Dictionary<string, double>
            {
                ["loss"] = 0.69 - 0.5 * t + 0.03 * Math.Sin(step),
                ["rewards/chosen"] = 0.8 * t,
                ["rewards/rejected"] = -0.6 * t,
                ["rewards/accuracies"] = 0.5 + 0.45 * t,
            });
            if (step % 10 == 0)
            {
                history.Log(step, t, new Dictionary<string, double> { ["eval_loss"] = 0.7 - 0.4 * t, ["eval_rewards/accuracies"] = 0.5 + 0.4 * t });
            }
        }
        return history;
    }

    [Fact]
    public void A_dpo_run_is_drawn_at_the_requested_size_with_every_curve()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("plots/curves.png");

        Assert.True(TrainingPlot.Save(DpoRun(), path, Width, Height));

        DecodedImage image = ImageDecoder.DecodeFile(path);
        Assert.Equal((Width, Height), (image.Width, image.Height));
        Assert.True(PixelsOf(image, TrainingPlot.TrainColour) > CurvePixels, "no train curve");
        Assert.True(PixelsOf(image, TrainingPlot.EvalColour) > CurvePixels, "no eval curve");
        Assert.True(PixelsOf(image, TrainingPlot.ChosenColour) > CurvePixels, "no chosen-rewards curve");
        Assert.True(PixelsOf(image, TrainingPlot.RejectedColour) > CurvePixels, "no rejected-rewards curve");
    }

    [Fact]
    public void An_sft_run_shows_its_loss_and_no_reward_panel()
    {
        var history = new MetricsHistory();
        for (int step = 1; step <= 20; step++)
        {
            history.Log(step, step / 20.0, new Dictionary<string, double> { ["loss"] = 3 - step * 0.1, ["nll_loss"] = 3 - step * 0.1 });
        }
        using var dir = new TempDirectory();

        Assert.True(TrainingPlot.Save(history, dir.Path("curves.png"), Width, Height));

        DecodedImage image = ImageDecoder.DecodeFile(dir.Path("curves.png"));
        Assert.True(PixelsOf(image, TrainingPlot.TrainColour) > CurvePixels, "no loss curve");
        Assert.Equal(0, PixelsOf(image, TrainingPlot.ChosenColour));
    }

    [Fact]
    public void Nothing_to_plot_writes_no_file()
    {
        var history = new MetricsHistory();
        history.Log(1, 0.1, new Dictionary<string, double> { ["grad_norm"] = 1 });
        using var dir = new TempDirectory();

        Assert.False(TrainingPlot.Save(history, dir.Path("curves.png")));
        Assert.False(File.Exists(dir.Path("curves.png")));
    }

    /// <summary>Pixels within 8 levels per channel of <paramref name="colour"/>: the core of an anti-aliased line keeps its colour to rounding.</summary>
    private static int PixelsOf(DecodedImage image, ScottPlot.Color colour)
    {
        byte[] pixels = image.Pixels.Pixels;
        int channels = image.Pixels.Channels, count = 0;
        for (int i = 0; i < pixels.Length; i += channels)
        {
            if (Math.Abs(pixels[i] - colour.R) <= 8 && Math.Abs(pixels[i + 1] - colour.G) <= 8 && Math.Abs(pixels[i + 2] - colour.B) <= 8)
            {
                count++;
            }
        }
        return count;
    }
}
