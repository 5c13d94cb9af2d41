package lambdatest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one external extension started by the emulator.
type process struct {
	path    string
	name    string // file name: what the extension must register as
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed once the process has been waited for

	// Guarded by the platform's mutex.
	ext      *extension // set when it registers
	exited   bool
	exitedAt time.Time
	exitCode int
	killed   bool
	hwm      int64         // peak VmHWM sampled from /proc, bytes
	maxRSS   int64         // rusage Maxrss after exit, bytes
	cpu      time.Duration // user+system CPU after exit
}

// childEnv is exactly what Lambda gives an external extension (see
// lambda-platform.md §5): no log group/stream, no handler, no task root.
func (p *Platform) childEnv() []string {
	o := p.o
	env := []string{
		"AWS_LAMBDA_RUNTIME_API=" + p.URL(),
		"AWS_LAMBDA_FUNCTION_NAME=" + o.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION=" + o.FunctionVersion,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + strconv.Itoa(o.MemoryMB),
		"AWS_REGION=" + o.Region,
		"AWS_DEFAULT_REGION=" + o.Region,
		"AWS_LAMBDA_INITIALIZATION_TYPE=" + o.initializationType(),
		"TZ=:UTC",
		"PATH=" + lambdaPath,
	}
	if o.ManagedInstances {
		env = append(env, "AWS_LAMBDA_MAX_CONCURRENCY="+strconv.Itoa(o.MaxConcurrency))
	}
	return append(env, o.Env...)
}

// functionEnv is what Lambda gives the runtime process for an invocation
// with the X-Ray header trace: the extensions' variables, the ones hidden
// from extensions (lambda-platform.md §5), then Options.Env.
func (p *Platform) functionEnv(trace string) []string {
	env := p.childEnv()
	n := len(env) - len(p.o.Env)
	extra := []string{
		"_HANDLER=" + p.o.Handler,
		"LAMBDA_TASK_ROOT=/var/task",
		"LAMBDA_RUNTIME_DIR=/var/runtime",
		"AWS_EXECUTION_ENV=AWS_Lambda_provided.al2023",
	}
	if trace != "" {
		extra = append(extra, "_X_AMZN_TRACE_ID="+trace)
	}
	return append(append(env[:n:n], extra...), p.o.Env...)
}

// startProcess starts path and lists it in p.procs, in its own process group, so that freezing and
// killing reach every process it spawns, with its output captured line by
// line.
func (p *Platform) startProcess(path string) (*process, error) {
	pr := &process{path: path, name: filepath.Base(path), done: make(chan struct{})}
	cmd := exec.Command(path)
	cmd.Env = p.childEnv()
	// Pdeathsig: a test binary that dies must not leave stopped children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout := &lineWriter{emit: func(l string) { p.extensionLine(l) }}
	stderr := &lineWriter{emit: func(l string) { p.extensionLine(l) }}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A grandchild holding the pipes must not keep Wait from returning.
	cmd.WaitDelay = time.Second
	pr.cmd = cmd
	// Holding the lock until the process is listed: it may register
	// before Start returns, and must be recognised by its name.
	p.mu.Lock()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("start extension %s: %w", path, err)
	}
	pr.pid = cmd.Process.Pid
	pr.started = time.Now()
	p.procs = append(p.procs, pr)
	p.mu.Unlock()
	p.wg.Go(func() { p.watchRSS(pr) })
	p.wg.Go(func() {
		err := cmd.Wait()
		stdout.flush()
		stderr.flush()
		p.processExited(pr, err)
		close(pr.done)
	})
	return pr, nil
}

// processExited records the end of a child.
func (p *Platform) processExited(pr *process, waitErr error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	pr.exited = true
	pr.exitedAt = now
	pr.exitCode = -1
	if st := pr.cmd.ProcessState; st != nil {
		pr.exitCode = st.ExitCode()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			// Not a figure of the extension: Linux carries the forking
			// process's pre-exec high-water mark into the child's
			// ru_maxrss (the test binary's memory), so only VmHWM
			// samples count; this is kept for reference.
			pr.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
			pr.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if e := pr.ext; e != nil {
		e.exited = true
		e.exitedAt = now
		if e.sub != nil {
			// Its listener is gone with it: stop delivering.
			e.sub.close()
		}
	}
	if !p.shutdown && !p.closed {
		msg := fmt.Sprintf("extension %s (pid %d) exited", pr.name, pr.pid)
		if waitErr != nil {
			msg += ": " + waitErr.Error()
		}
		p.failures = append(p.failures, msg)
	}
	p.broadcastLocked()
}

// signal sends sig to the process group unless the process has exited.
func (p *Platform) signal(pr *process, sig syscall.Signal) {
	p.mu.Lock()
	exited := pr.exited
	p.mu.Unlock()
	// pid > 0 always holds for a started process; the check keeps a bug
	// from ever signalling our own process group (kill(-0)).
	if !exited && pr.pid > 0 {
		_ = syscall.Kill(-pr.pid, sig)
	}
}

// kill samples the peak RSS, then SIGKILLs the process group.
func (p *Platform) kill(pr *process) {
	p.sampleRSS(pr)
	p.mu.Lock()
	if !pr.exited {
		pr.killed = true
	}
	p.mu.Unlock()
	p.signal(pr, syscall.SIGKILL)
}

// sampleRSS records the process's VmHWM (peak resident set) while it runs.
func (p *Platform) sampleRSS(pr *process) int64 {
	hwm, err := readVmHWM(pr.pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && !pr.exited && hwm > pr.hwm {
		pr.hwm = hwm
	}
	return pr.hwm
}

// rssSampleEvery is how often the peak RSS is read while a process runs,
// so that the peak of its last moments (the final flush at SHUTDOWN) is
// seen before /proc forgets the process.
const rssSampleEvery = 10 * time.Millisecond

// watchRSS samples the process's VmHWM until it exits.
func (p *Platform) watchRSS(pr *process) {
	t := time.NewTicker(rssSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-pr.done:
			return
		case <-t.C:
			p.sampleRSS(pr)
		}
	}
}

// readVmHWM returns the VmHWM line of /proc/PID/status in bytes.
func readVmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return kb * 1024, nil
	}
	return 0, errors.New("lambdatest: no VmHWM in /proc status")
}

// ProcState returns the state letter of /proc/PID/stat ('R', 'S', 'T' for
// stopped, 'Z', ...). Tests use it to check that a frozen extension really
// is stopped.
func ProcState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may contain spaces: the state
	// follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("lambdatest: malformed /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// waitStopped waits until SIGSTOP has taken effect: the kernel delivers it
// asynchronously, and Frozen() must mean "really stopped".
func (p *Platform) waitStopped(pr *process) {
	delay := 100 * time.Microsecond
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		st, err := ProcState(pr.pid)
		if err != nil || st == 'T' || st == 't' || st == 'Z' || st == 'X' {
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, 5*time.Millisecond)
	}
}

// lineWriter turns a child's output stream into lines.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSuffix(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		w.emit(line)
	}
	return len(b), nil
}

// flush emits a last line without a newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}
