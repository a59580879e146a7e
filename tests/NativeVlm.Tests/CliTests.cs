using System.Diagnostics;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>The console host as a user runs it: the real binary, its exit code and its output.</summary>
public class CliTests
{
    /// <summary>
    /// nativevlm.dll of the same build as these tests: src/NativeVlm.Cli/bin/&lt;configuration&gt;/net10.0/ in the
    /// default layout, or bin/NativeVlm.Cli/&lt;pivot&gt;/ next to bin/NativeVlm.Tests/&lt;pivot&gt;/ when built with
    /// dotnet's --artifacts-path (parallel builds in separate folders).
    /// </summary>
    private static string HostPath()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string framework = testDir.Name, configuration = testDir.Parent!.Name;
        string artifactsCandidate = Path.Combine(testDir.Parent!.Parent!.FullName, "NativeVlm.Cli", testDir.Name, "nativevlm.dll");
        if (File.Exists(artifactsCandidate))
        {
            return artifactsCandidate;
        }
        for (DirectoryInfo? dir = testDir; dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "src", "NativeVlm.Cli", "bin", configuration, framework, "nativevlm.dll");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new FileNotFoundException($"nativevlm.dll ({configuration}/{framework}) not found above {testDir.FullName}");
    }

    internal static (int ExitCode, string Output) RunHost(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(HostPath());
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        // The slowest call, a one-step demo (making its model and data included), takes about 5 s on an idle 2-core machine; a minute means it hangs.
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), "nativevlm did not finish within a minute");
        return (process.ExitCode, stdout + stderr.Result);
    }

    [Fact]
    public void Demo_writes_its_outputs_and_reports_a_run_below_the_bar_with_exit_one()
    {
        // One step is all warmup (learning rate 0): the adapters stay zero, policy and reference agree,
        // no held-out pair has chosen ahead of rejected, and the bar fails. The full run's bar is DemoRunTests'.
        using var dir = new TempDirectory();

        (int exitCode, string output) = RunHost("demo", "--output_dir", dir.Root, "--max_steps", "1");

        Assert.True(exitCode == 1, output);
        Assert.Contains("demo: held-out reward accuracy 0.000 is below the bar of 0.9 after 1 steps", output);
        string outputDir = Path.Combine(dir.Root, "output");
        Assert.Contains($"adapter:     {outputDir}", output);
        Assert.Contains($"metrics:     {Path.Combine(outputDir, "metrics.jsonl")}", output);
        Assert.Contains($"TensorBoard: {Path.Combine(outputDir, "runs")}", output);
        Assert.Contains($"plot:        {Path.Combine(outputDir, "training_curves.png")}", output);
        Assert.True(File.Exists(Path.Combine(outputDir, "adapter_model.safetensors")));
        Assert.True(File.Exists(Path.Combine(outputDir, "training_curves.png")));
        Assert.Single(Directory.GetFiles(Path.Combine(outputDir, "runs"), "events.out.tfevents.*"));
    }

    [Fact]
    public void Demo_help_exits_zero()
    {
        (int exitCode, string output) = RunHost("demo", "--help");

        Assert.Equal(0, exitCode);
        Assert.Contains("--max_steps", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Compare_checks_a_model_against_transformers_and_exits_zero()
    {
        (int exitCode, string output) = RunHost("compare", "--model", Fixtures.Path("tiny-idefics3"),
            "--inputs", Fixtures.Path("tiny-idefics3", "inputs.safetensors"),
            "--expected", Fixtures.Path("tiny-idefics3", "outputs.safetensors"));

        Assert.True(exitCode == 0, output);
        Assert.Contains("partial.logits", output);
        Assert.Matches(@"compare: [1-9]\d* passed, 0 failed", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Compare_fails_with_exit_one_when_the_tolerance_is_impossible()
    {
        // A relative tolerance of 1e-12 is below fp32 rounding: some tensor must fail.
        (int exitCode, string output) = RunHost("compare", "--model", Fixtures.Path("tiny-idefics3"),
            "--inputs", Fixtures.Path("tiny-idefics3", "inputs.safetensors"),
            "--expected", Fixtures.Path("tiny-idefics3", "outputs.safetensors"), "--rtol", "1e-12");

        Assert.Equal(1, exitCode);
        Assert.Contains("FAIL", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Compare_with_an_adapter_checks_the_adapted_outputs_and_exits_zero()
    {
        (int exitCode, string output) = RunHost("compare", "--model", Fixtures.Path("tiny-idefics3"),
            "--adapter", Fixtures.Path("tiny-idefics3-dora"),
            "--inputs", Fixtures.Path("tiny-idefics3", "inputs.safetensors"),
            "--expected", Fixtures.Path("tiny-idefics3-dora", "dpo_outputs.safetensors"));

        Assert.True(exitCode == 0, output);
        Assert.Contains("DoRA on ", output);
        Assert.Contains("adapter.logits", output);
        Assert.Matches(@"compare: [1-9]\d* passed, 0 failed", output);
    }

    [Fact]
    public void Compare_of_a_missing_model_folder_exits_two_naming_it()
    {
        (int exitCode, string output) = RunHost("compare", "--model", "/nonexistent/snapshot",
            "--inputs", "/nonexistent/in.safetensors", "--expected", "/nonexistent/out.safetensors");

        Assert.Equal(2, exitCode);
        Assert.Contains("/nonexistent/snapshot", output);
    }
}
