using System.Diagnostics;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>The console host as a user runs it: the real binary, its exit code and its output.</summary>
public class CliTests
{
    /// <summary>src/NativeVlm.Cli/bin/&lt;configuration&gt;/net10.0/nativevlm.dll of the same build as these tests.</summary>
    private static string HostPath()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string framework = testDir.Name, configuration = testDir.Parent!.Name;
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

    private static (int ExitCode, string Output) RunHost(params string[] args)
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
        // The demo takes about a second here; a minute means it hangs.
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), "nativevlm did not finish within a minute");
        return (process.ExitCode, stdout + stderr.Result);
    }

    [Fact]
    public void Demo_trains_the_graph_until_the_loss_falls()
    {
        (int exitCode, string output) = RunHost("demo");

        Assert.True(exitCode == 0, output);
        Assert.Contains("the graph learns", output);
    }

    [Fact]
    public void Demo_help_exits_zero()
    {
        (int exitCode, string output) = RunHost("demo", "--help");

        Assert.Equal(0, exitCode);
        Assert.Contains("--steps", output);
    }

    [Fact]
    public void Bad_device_exits_two_with_a_one_line_reason()
    {
        (int exitCode, string output) = RunHost("demo", "--device", "tpu");

        Assert.Equal(2, exitCode);
        Assert.Contains("unknown device 'tpu'", output);
    }
}
