using System.Diagnostics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

/// <summary>Another program as an independent reader of what the code under test wrote (Python, Node.js).</summary>
internal static class ExternalProgram
{
    /// <summary>Whether <paramref name="name"/> is an executable file in a folder of PATH.</summary>
    public static bool OnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, name)));

    public static (int ExitCode, string Stdout, string Stderr) Run(string program, IEnumerable<string> args, string? workingDirectory = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory ?? "" };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        TimeSpan limit = timeout ?? TimeSpan.FromMinutes(1);
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{program} did not finish within {limit}");
        }
        return (process.ExitCode, stdout, stderr.Result);
    }
}
